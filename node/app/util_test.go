package app

import (
	"testing"

	"github.com/goblocks/goblocks/node/hlc"
)

func mustVersion(t *testing.T, s string) hlc.Version {
	t.Helper()
	v, err := hlc.ParseVersion(s)
	if err != nil {
		t.Fatal(err)
	}
	return v
}
