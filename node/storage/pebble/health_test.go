package pebble

import (
	"errors"
	"fmt"
	"strings"
	"syscall"
	"testing"
	"time"

	pebbledb "github.com/cockroachdb/pebble"

	"github.com/goblocks/goblocks/node/storage"
)

// corruption is the mark pebble puts on a block failing its checksum.
func corruption() error { return pebbledb.ErrCorruption }

func newTestFaults() (*faults, *fakeClock, *[]string) {
	clock := &fakeClock{t: time.Unix(1_700_000_000, 0)}
	var lines []string
	f := newFaults(func(format string, args ...any) {
		lines = append(lines, fmt.Sprintf(format, args...))
	}, clock.now)
	return f, clock, &lines
}

func TestBackgroundErrorsAreCountedAndRateLimited(t *testing.T) {
	f, clock, lines := newTestFaults()
	for range 1000 {
		f.backgroundError(fmt.Errorf("flush: %w", syscall.ENOSPC))
		clock.advance(time.Millisecond)
	}
	h := f.snapshot()
	if h.BackgroundErrors != 1000 || !strings.Contains(h.LastBackgroundError, "no space left") ||
		!h.LastBackgroundErrorAt.Equal(clock.t.Add(-time.Millisecond)) {
		t.Fatalf("Health = %+v", h)
	}
	if len(*lines) != 1 {
		t.Fatalf("%d lines logged for 1000 errors in 1 s, want 1: %q", len(*lines), *lines)
	}
	// Neither fatal nor corrupt: pebble retries flushes, and space may come back.
	if !h.OK() || f.halted.Load() || f.maxCompactions() != 1 {
		t.Fatalf("a full disk halted the engine: %+v", h)
	}
}

func TestCorruptionInBackgroundHaltsCompactions(t *testing.T) {
	f, _, lines := newTestFaults()
	if f.maxCompactions() != 1 {
		t.Fatalf("maxCompactions = %d before any fault", f.maxCompactions())
	}
	f.backgroundError(fmt.Errorf("compaction: %w", corruption()))
	// Pebble schedules a compaction only while the number in progress
	// (never negative) is below this.
	if got := f.maxCompactions(); got >= 0 {
		t.Fatalf("maxCompactions = %d after corruption, want < 0", got)
	}
	h := f.snapshot()
	if !h.Corrupt || h.Failed || h.OK() || h.BackgroundErrors != 1 {
		t.Fatalf("Health = %+v, want Corrupt", h)
	}
	if len(*lines) != 1 || !strings.Contains((*lines)[0], "compactions halted") {
		t.Fatalf("lines = %q", *lines)
	}
}

func TestClassify(t *testing.T) {
	f, _, _ := newTestFaults()
	if err := f.classify(pebbledb.ErrNotFound); err != pebbledb.ErrNotFound {
		t.Fatalf("classify(not found) = %v", err)
	}
	if f.snapshot().Corrupt {
		t.Fatal("a plain error marked the engine corrupt")
	}
	err := f.classify(fmt.Errorf("pebble/table: checksum mismatch: %w", corruption()))
	if !errors.Is(err, storage.ErrCorrupt) || !strings.Contains(err.Error(), "checksum mismatch") {
		t.Fatalf("classify(corruption) = %v, want ErrCorrupt keeping pebble's message", err)
	}
	if !f.snapshot().Corrupt {
		t.Fatal("corruption not recorded")
	}
	if f.maxCompactions() != 1 {
		t.Fatal("a read's corruption halted compactions; only a failing compaction does")
	}
}

// TestFatalfFailsTheEngineAndReturns: pebble calls Fatalf from its own
// goroutines too, where a panic would kill the process.
func TestFatalfFailsTheEngineAndReturns(t *testing.T) {
	f, clock, lines := newTestFaults()
	l := logger{f}
	l.Fatalf("MANIFEST sync failed: %v", syscall.ENOSPC)
	clock.advance(time.Second)
	l.Fatalf("pebble: fatal commit error: %v", syscall.EIO)

	err := f.err()
	if !errors.Is(err, storage.ErrFailed) || !strings.Contains(err.Error(), "MANIFEST sync failed") {
		t.Fatalf("err() = %v, want ErrFailed with the first cause", err)
	}
	h := f.snapshot()
	if !h.Failed || h.OK() || !strings.Contains(h.FailedReason, "MANIFEST sync failed") || !h.FailedAt.Equal(clock.t.Add(-time.Second)) {
		t.Fatalf("Health = %+v", h)
	}
	if f.maxCompactions() >= 0 {
		t.Fatal("compactions still run on a failed engine")
	}
	if len(*lines) != 1 {
		t.Fatalf("lines = %q, want the first fatal only", *lines)
	}
}
