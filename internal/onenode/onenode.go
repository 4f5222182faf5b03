// Package onenode builds, for tests, the coordinator of a one-node ring
// over the memory engine: the real replication path with nothing remote,
// for packages layered on the coordinator (volume I/O, the NBD server).
package onenode

import (
	"testing"

	"github.com/goblocks/goblocks/node/hlc"
	"github.com/goblocks/goblocks/node/replication"
	"github.com/goblocks/goblocks/node/ring"
	"github.com/goblocks/goblocks/node/storage/memory"
)

// Coordinator returns the coordinator of node n1, the only member of its
// ring (RF 1); the test's cleanup closes it.
func Coordinator(t testing.TB) *replication.Coordinator {
	t.Helper()
	c := replication.New(replication.Options{Self: "n1", Engine: memory.New(), Clock: hlc.NewClock(nil, 0)})
	t.Cleanup(c.Close)
	r, err := ring.New([]ring.Member{{Name: "n1", Addr: "127.0.0.1:1", VNodes: 4}})
	if err != nil {
		t.Fatal(err)
	}
	c.SetView(ring.View{Current: r, RF: 1})
	return c
}
