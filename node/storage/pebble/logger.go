package pebble

import (
	"fmt"

	pebbledb "github.com/cockroachdb/pebble"
)

// logger adapts the engine's Logf to pebble.Logger. Every line is rate
// limited per format string: pebble logs from retry loops (see
// logInterval), and no loop of pebble's may flood the node's log.
type logger struct {
	faults *faults
}

var _ pebbledb.Logger = logger{}

func (l logger) Infof(format string, args ...any) {
	l.faults.limit.logf(l.faults.logf, format, format, args...)
}

// Fatalf is called by pebble when it cannot go on. Pebble's default logger
// exits the process; a panic would crash it too whenever the call comes
// from one of pebble's own goroutines, as it does for a MANIFEST write
// that fails during a flush or compaction. So Fatalf records the failure,
// which halts compactions and makes the engine refuse every operation
// (including reads: the memtable may hold writes that never reached the
// disk), and returns.
//
// Returning is what pebble's contract forbids, so each I/O call site of
// v1.1.5 was checked: logAndApply, versionSet.create, MustExist and
// OpenForReading all return an error right after Fatalf. The exception is
// DB.applyInternal (db.go:857), which has already applied the batch to the
// memtable and returns nil from a commit whose WAL write failed (ENOSPC,
// EIO); Engine.commit therefore checks for a failure after every commit.
func (l logger) Fatalf(format string, args ...any) {
	l.faults.fail(fmt.Errorf(format, args...))
}

// eventListener keeps the events an operator acts on, routed through the
// rate-limited logger, and feeds background errors to faults.
func (f *faults) eventListener() *pebbledb.EventListener {
	el := pebbledb.MakeLoggingEventListener(logger{f})
	// Flush, compaction and table events would log on every flush.
	return &pebbledb.EventListener{
		BackgroundError: f.backgroundError,
		DiskSlow:        el.DiskSlow,
		WriteStallBegin: el.WriteStallBegin,
		WriteStallEnd:   el.WriteStallEnd,
	}
}
