package memory_test

import (
	"testing"

	"github.com/goblocks/goblocks/node/storage"
	"github.com/goblocks/goblocks/node/storage/memory"
	"github.com/goblocks/goblocks/node/storage/storagetest"
)

func TestConformance(t *testing.T) {
	storagetest.Run(t, storagetest.IDOrder, func(*testing.T) storage.Engine { return memory.New() })
}
