package pebble

import (
	"sync"
	"sync/atomic"
)

// gate admits operations until the engine closes, and lets Close wait for
// those in flight, since pebble panics when used after it closed.
//
// Close normally waits for every operation to leave. It stops waiting if
// pebble wedges: pebble v1.1.5 panics on some I/O errors while holding its
// commit or DB mutex (db.go:965 when a commit finds the WAL writer already
// failed, db.go:2679 when rotateWAL cannot close the old WAL),
// Engine.commit recovers, and commits that were already inside pebble
// then wait for those mutexes forever. Their goroutines stay blocked;
// nothing short of a restart releases them.
type gate struct {
	inFlight atomic.Int64
	closed   atomic.Bool

	mu     sync.Mutex
	cond   sync.Cond // signalled under mu when inFlight reaches 0 or on wedge
	wedged bool
}

func newGate() *gate {
	g := &gate{}
	g.cond.L = &g.mu
	return g
}

// enter admits an operation; leave must follow when it returns true.
func (g *gate) enter() bool {
	// enter increments then checks closed; close sets closed then checks
	// the count. With sequentially consistent atomics at least one of the
	// two sees the other, so no operation slips in after close stopped
	// waiting.
	g.inFlight.Add(1)
	if g.closed.Load() {
		g.leave()
		return false
	}
	return true
}

func (g *gate) leave() {
	if g.inFlight.Add(-1) == 0 && g.closed.Load() {
		g.mu.Lock()
		g.cond.Broadcast()
		g.mu.Unlock()
	}
}

// wedge records that pebble can no longer be closed safely and wakes a
// waiting close.
func (g *gate) wedge() {
	g.mu.Lock()
	g.wedged = true
	g.cond.Broadcast()
	g.mu.Unlock()
}

// close stops admitting operations and waits for those in flight. It
// reports false if the gate was already closed, and whether pebble is
// wedged, in which case it returns without waiting further.
func (g *gate) close() (first, wedged bool) {
	if g.closed.Swap(true) {
		return false, false
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	for g.inFlight.Load() > 0 && !g.wedged {
		g.cond.Wait()
	}
	return true, g.wedged
}
