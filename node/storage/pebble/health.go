package pebble

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	pebbledb "github.com/cockroachdb/pebble"

	"github.com/goblocks/goblocks/node/storage"
)

// faults records what went wrong in an engine: a fatal failure, which
// makes every operation fail with storage.ErrFailed; corruption; failed
// background jobs. Pebble reports these from its own goroutines, some
// with its DB mutex held, so no method blocks on I/O or calls into pebble.
type faults struct {
	now   func() time.Time
	logf  func(format string, args ...any)
	limit *logLimiter

	// failed and halted are read on hot paths (every operation, every
	// compaction pick) without taking mu.
	failed atomic.Bool
	halted atomic.Bool

	mu      sync.Mutex
	health  storage.Health
	failure error // wraps storage.ErrFailed; set with failed
}

func newFaults(logf func(string, ...any), now func() time.Time) *faults {
	return &faults{now: now, logf: logf, limit: newLogLimiter(logInterval, now)}
}

// fail records cause as the engine's fatal failure (the first one wins)
// and halts compactions: after a failed WAL or MANIFEST write pebble's
// state may be torn, and a compaction would write more on top of it.
func (f *faults) fail(cause error) {
	f.halted.Store(true)
	f.mu.Lock()
	first := f.failure == nil
	if first {
		f.failure = fmt.Errorf("pebble: engine failed: %v: %w", cause, storage.ErrFailed)
		f.health.Failed, f.health.FailedReason, f.health.FailedAt = true, cause.Error(), f.now()
		f.failed.Store(true)
	}
	f.mu.Unlock()
	f.limit.logf(f.logf, "fatal", "pebble: fatal: %v; the engine refuses all operations until reopened", cause)
}

// err returns the failure every operation must return, or nil.
func (f *faults) err() error {
	if !f.failed.Load() {
		return nil
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.failure
}

// corrupt records that pebble found a block failing its checksum.
func (f *faults) corrupt(cause error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.health.Corrupt {
		f.health.Corrupt, f.health.CorruptReason, f.health.CorruptAt = true, cause.Error(), f.now()
	}
}

// classify maps pebble's corruption errors (a block or record failing its
// checksum, pebble.IsCorruptionError) to storage.ErrCorrupt, keeping
// pebble's message, and records them: a damaged table can never be
// compacted again (see backgroundError), so one found by a read means the
// store needs rebuilding too. Other errors pass through.
func (f *faults) classify(err error) error {
	if err == nil || errors.Is(err, storage.ErrCorrupt) || !pebbledb.IsCorruptionError(err) {
		return err
	}
	f.corrupt(err)
	return fmt.Errorf("%w: %w", err, storage.ErrCorrupt)
}

// backgroundError is pebble's EventListener.BackgroundError: a flush or
// compaction failed, and pebble will retry it at once.
//
// A compaction that fails on corruption fails the same way on every
// retry: v1.1.5 re-picks the same inputs immediately with no backoff
// (the TODO at compaction.go:2681) and was measured at ~400 failures a
// second, each burning a core to re-read the tables. Pebble has no call
// to pause compactions at run time, but it asks
// Options.MaxConcurrentCompactions before scheduling each one, so
// halting there (see maxCompactions) ends the loop. The corrupt table can
// never be compacted again, so the store must be rebuilt: Corrupt says so.
func (f *faults) backgroundError(err error) {
	kind := "other"
	switch {
	case pebbledb.IsCorruptionError(err):
		kind = "corruption"
		f.halted.Store(true)
		f.corrupt(err)
	case errors.Is(err, syscall.ENOSPC):
		// Flushes retry in a loop too (compaction.go:1890): a flush that
		// cannot create its table was measured failing ~13,000 times a
		// second. Pebble offers no way to pause flushes, halting would
		// stall writes for good, and space may come back; so only the log
		// is limited, and BackgroundErrors shows the loop.
		kind = "no space"
	}
	f.mu.Lock()
	f.health.BackgroundErrors++
	f.health.LastBackgroundError, f.health.LastBackgroundErrorAt = err.Error(), f.now()
	f.mu.Unlock()
	msg := "pebble: background error: %v"
	if kind == "corruption" {
		msg += "; compactions halted, rebuild this store from its replicas"
	}
	f.limit.logf(f.logf, "background error: "+kind, msg, err)
}

// maxCompactions is Options.MaxConcurrentCompactions. Pebble reads it
// before scheduling any compaction and schedules none while the count in
// progress is at least this value. Halted, it returns -1 rather than 0:
// pebble also divides by it when sizing a compaction it has picked
// (compaction.go:63), and a halt landing between the check and the
// division must not panic a background goroutine; uint64(-1) is harmless.
func (f *faults) maxCompactions() int {
	if f.halted.Load() {
		return -1
	}
	return 1 // pebble's default
}

func (f *faults) snapshot() storage.Health {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.health
}
