// Package diskguard keeps a node from filling its disk. Pebble treats a
// failed WAL write as fatal (the process dies, and cannot start again
// while the disk is still full), so writes are refused while the data
// directory's free space is below a floor: the node degrades to serving
// reads, its peers hint the writes it refused, and it takes writes again
// by itself once space returns.
package diskguard

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/goblocks/goblocks/node/storage"
)

// ErrInsufficientStorage: a write was refused because the disk is (nearly)
// full. The API answers it with 507.
var ErrInsufficientStorage = errors.New("insufficient storage")

// Interval is how often free space is measured. At the ingest rate of one
// node (~100 MB/s) a second of writes is far below the default floor.
const Interval = time.Second

// Guard measures free space and reports when it is below the floor.
type Guard struct {
	dir  string
	min  uint64
	free func(dir string) (uint64, error)

	avail atomic.Uint64
	err   atomic.Pointer[error] // measuring failed: treated as full
}

// New returns a guard of dir that refuses writes below minFree bytes. It
// measures once at once, so a node that starts on a full disk starts
// read-only.
func New(dir string, minFree uint64) *Guard {
	g := &Guard{dir: dir, min: minFree, free: Free}
	g.measure()
	return g
}

// Free is the space available to unprivileged writers in dir's filesystem.
func Free(dir string) (uint64, error) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return 0, fmt.Errorf("statfs %s: %w", dir, err)
	}
	return st.Bavail * uint64(st.Bsize), nil
}

func (g *Guard) measure() {
	n, err := g.free(g.dir)
	if err != nil {
		g.err.Store(&err)
		return
	}
	g.err.Store(nil)
	g.avail.Store(n)
}

// Run measures every Interval until ctx ends.
func (g *Guard) Run(ctx context.Context) {
	t := time.NewTicker(Interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			g.measure()
		}
	}
}

// Available is the free space last measured.
func (g *Guard) Available() uint64 { return g.avail.Load() }

// Check returns nil while writes may proceed, otherwise an error wrapping
// ErrInsufficientStorage that says why.
func (g *Guard) Check() error {
	if g == nil {
		return nil
	}
	if p := g.err.Load(); p != nil {
		return fmt.Errorf("%w: cannot measure free space: %w", ErrInsufficientStorage, *p)
	}
	if n := g.avail.Load(); n < g.min {
		return fmt.Errorf("%w: %s has %d MiB free, below MinFreeBytes (%d MiB): refusing writes until space is freed",
			ErrInsufficientStorage, g.dir, n>>20, g.min>>20)
	}
	return nil
}

// Engine refuses the writes that add data (Apply, ApplyBatch) while the
// guard says the disk is full. Reads, and the writes that free space
// (Remove of collected copies, MarkStale's metadata rewrite), pass.
type Engine struct {
	storage.Engine
	Guard *Guard
}

// Apply refuses rec while the disk is full.
func (e Engine) Apply(id string, rec storage.Record) (bool, error) {
	if err := e.Guard.Check(); err != nil {
		return false, err
	}
	return e.Engine.Apply(id, rec)
}

// ApplyBatch refuses items while the disk is full.
func (e Engine) ApplyBatch(items []storage.Item) ([]bool, error) {
	if err := e.Guard.Check(); err != nil {
		return nil, err
	}
	return e.Engine.ApplyBatch(items)
}
