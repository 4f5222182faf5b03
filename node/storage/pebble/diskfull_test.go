package pebble_test

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/vfs"
	"github.com/cockroachdb/pebble/vfs/errorfs"

	"github.com/goblocks/goblocks/node/storage"
	"github.com/goblocks/goblocks/node/storage/pebble"
	"github.com/goblocks/goblocks/node/storage/storagetest"
)

// fullDisk is a filesystem that fails every write with ENOSPC while full.
type fullDisk struct {
	full atomic.Bool
	fs   vfs.FS
}

func newFullDisk() *fullDisk {
	d := &fullDisk{}
	d.fs = errorfs.Wrap(vfs.Default, errorfs.InjectorFunc(func(op errorfs.Op, _ string) error {
		if !d.full.Load() {
			return nil
		}
		switch op {
		case errorfs.OpCreate, errorfs.OpFileWrite, errorfs.OpFileWriteAt,
			errorfs.OpFileSync, errorfs.OpFilePreallocate:
			return syscall.ENOSPC
		}
		return nil
	}))
	return d
}

func (d *fullDisk) open(t *testing.T, dir string) *pebble.Engine {
	t.Helper()
	logs := &logLines{t: t}
	e, err := pebble.Open(dir, pebble.WithFSForTest(pebble.Options{Logf: logs.logf}, d.fs))
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// closeWithin closes e, failing the test if Close hangs.
func closeWithin(t *testing.T, e *pebble.Engine) error {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- e.Close() }()
	select {
	case err := <-done:
		return err
	case <-time.After(30 * time.Second):
		t.Fatal("Close hung")
		return nil
	}
}

// checkDurable opens a healthy copy of dir, as a restarted process would
// find it, and checks that every acknowledged record is there.
func checkDurable(t *testing.T, dir string, acked map[string]storage.Record) {
	t.Helper()
	restarted := t.TempDir()
	if err := os.CopyFS(restarted, os.DirFS(dir)); err != nil {
		t.Fatal(err)
	}
	e := open(t, restarted)
	defer e.Close()
	checkHolds(t, e, acked)
}

// checkHolds fails t unless e holds every acknowledged record.
func checkHolds(t *testing.T, e *pebble.Engine, acked map[string]storage.Record) {
	t.Helper()
	for id, want := range acked {
		got, err := e.Get(id)
		if err != nil {
			t.Fatalf("acknowledged %q lost: %v", id, err)
		}
		storagetest.CheckRecord(t, got, want)
	}
}

// TestDiskFullFailsTheEngineWithoutExiting: pebble v1.1.5 calls
// Logger.Fatalf when a WAL write fails (its default logger exits the
// process) and, if Fatalf returns, reports the commit as a success. The
// engine must fail the write, refuse everything after it, report it in
// Health, close cleanly, and keep every acknowledged write.
func TestDiskFullFailsTheEngineWithoutExiting(t *testing.T) {
	disk := newFullDisk()
	dir := t.TempDir()
	e := disk.open(t, dir)
	acked := make(map[string]storage.Record)
	for i := range 20 {
		id, r := fmt.Sprintf("r%02d", i), rec(uint64(i+1), "n1")
		mustApply(t, e, id, r)
		acked[id] = r
	}

	disk.full.Store(true)
	if ok, err := e.Apply("late", rec(100, "n1")); ok || !errors.Is(err, storage.ErrFailed) {
		t.Fatalf("Apply on a full disk = %v, %v; want false, ErrFailed", ok, err)
	}
	h := e.Health()
	if !h.Failed || !strings.Contains(h.FailedReason, "no space left on device") || h.OK() {
		t.Fatalf("Health = %+v, want Failed on ENOSPC", h)
	}
	// Failed is final, even once space is back: pebble's WAL writer keeps
	// its error, and the memtable may hold the failed write.
	disk.full.Store(false)
	if _, err := e.Get("r00"); !errors.Is(err, storage.ErrFailed) {
		t.Fatalf("Get after the failure = %v, want ErrFailed", err)
	}
	if _, err := e.ApplyBatch([]storage.Item{{ID: "x", Record: rec(1, "n1")}}); !errors.Is(err, storage.ErrFailed) {
		t.Fatalf("ApplyBatch after the failure = %v, want ErrFailed", err)
	}
	if err := e.Scan("", func(string, storage.Meta) bool { return true }); !errors.Is(err, storage.ErrFailed) {
		t.Fatalf("Scan after the failure = %v, want ErrFailed", err)
	}
	if err := closeWithin(t, e); errors.Is(err, storage.ErrFailed) {
		t.Fatalf("Close = %v: pebble wedged with a single writer", err)
	}
	if !e.Health().Failed {
		t.Fatal("Health forgot the failure after Close")
	}
	// Close released the directory: the store reopens in this process.
	e = open(t, dir)
	defer e.Close()
	checkHolds(t, e, acked)
}

// TestDiskFullUnderConcurrentWrites: with many commits inside pebble when
// the disk fills, none may be acknowledged without reaching the disk.
// Pebble may wedge here (see gate): then writes already inside it never
// return, and Close must return anyway.
func TestDiskFullUnderConcurrentWrites(t *testing.T) {
	const writers = 16
	for round := range 3 {
		t.Run(fmt.Sprint(round), func(t *testing.T) {
			disk := newFullDisk()
			dir := t.TempDir()
			e := disk.open(t, dir)
			var (
				mu       sync.Mutex
				acked    = make(map[string]storage.Record)
				finished atomic.Int64
				wrote    atomic.Int64
			)
			for w := range writers {
				go func() {
					defer finished.Add(1)
					for i := 0; ; i++ {
						id, r := fmt.Sprintf("w%02d-%04d", w, i), rec(uint64(i+1), fmt.Sprint("n", w))
						ok, err := e.Apply(id, r)
						if err != nil {
							if !errors.Is(err, storage.ErrFailed) {
								t.Errorf("Apply: %v, want ErrFailed", err)
							}
							return
						}
						if ok {
							mu.Lock()
							acked[id] = r
							mu.Unlock()
							wrote.Add(1)
						}
					}
				}()
			}
			deadline := time.Now().Add(30 * time.Second)
			for wrote.Load() < 200 {
				if time.Now().After(deadline) {
					t.Fatal("writers made no progress")
				}
				time.Sleep(time.Millisecond)
			}
			disk.full.Store(true)
			// Every writer returns, unless pebble wedged under it.
			for finished.Load() < writers && !e.WedgedForTest() {
				if time.Now().After(deadline) {
					t.Fatalf("%d of %d writers still running, engine %+v", writers-finished.Load(), writers, e.Health())
				}
				time.Sleep(time.Millisecond)
			}
			closeErr := closeWithin(t, e)
			t.Logf("%d acknowledged, %d writers returned, wedged %v, close: %v", len(acked), finished.Load(), e.WedgedForTest(), closeErr)
			if !e.Health().Failed {
				t.Fatalf("Health = %+v, want Failed", e.Health())
			}
			mu.Lock()
			defer mu.Unlock()
			checkDurable(t, dir, acked)
		})
	}
}
