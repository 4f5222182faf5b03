package diskguard

import (
	"errors"
	"testing"

	"github.com/goblocks/goblocks/node/hlc"
	"github.com/goblocks/goblocks/node/storage"
	"github.com/goblocks/goblocks/node/storage/memory"
)

func TestGuardedEngine(t *testing.T) {
	free := uint64(100)
	var statErr error
	g := &Guard{dir: "/data", min: 50, free: func(string) (uint64, error) { return free, statErr }}
	g.measure()
	e := Engine{Engine: memory.New(), Guard: g}
	v := hlc.Version{Timestamp: 5, Node: "n"}
	rec := storage.NewRecord([]byte("x"), v)
	if _, err := e.Apply("a", rec); err != nil {
		t.Fatalf("write with room: %v", err)
	}

	free = 10
	g.measure()
	if _, err := e.Apply("b", rec); !errors.Is(err, ErrInsufficientStorage) {
		t.Fatalf("write below the floor: %v, want ErrInsufficientStorage", err)
	}
	if _, err := e.ApplyBatch([]storage.Item{{ID: "c", Record: rec}}); !errors.Is(err, ErrInsufficientStorage) {
		t.Fatalf("batch below the floor: %v, want ErrInsufficientStorage", err)
	}
	if _, err := e.Get("a"); err != nil {
		t.Fatalf("read below the floor: %v", err)
	}
	if ok, err := e.Remove("a", v); !ok || err != nil {
		t.Fatalf("collecting (frees space) below the floor: %v %v", ok, err)
	}

	statErr = errors.New("statfs failed")
	free = 1000
	g.measure()
	if err := g.Check(); !errors.Is(err, ErrInsufficientStorage) {
		t.Fatalf("unmeasurable free space: %v, want writes refused", err)
	}
	statErr = nil
	g.measure()
	if err := g.Check(); err != nil {
		t.Fatalf("space back: %v", err)
	}
	var nilGuard *Guard
	if err := nilGuard.Check(); err != nil {
		t.Fatalf("nil guard: %v", err)
	}
}
