package pebble_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/goblocks/goblocks/node/storage"
	"github.com/goblocks/goblocks/node/storage/pebble"
	"github.com/goblocks/goblocks/node/storage/storagetest"
)

// Tests that damage pebble's own files, below the engine's checksums.

// logLines collects the engine's log lines.
type logLines struct {
	t     testing.TB
	mu    sync.Mutex
	lines []string
}

func (l *logLines) logf(format string, args ...any) {
	line := fmt.Sprintf(format, args...)
	l.t.Log(line)
	l.mu.Lock()
	l.lines = append(l.lines, line)
	l.mu.Unlock()
}

func (l *logLines) count(substr string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, line := range l.lines {
		if strings.Contains(line, substr) {
			n++
		}
	}
	return n
}

func openOpts(dir string, logs *logLines) (*pebble.Engine, error) {
	return pebble.Open(dir, pebble.Options{Logf: logs.logf})
}

// files returns the files in dir matching pattern, failing if none do.
func files(t *testing.T, dir, pattern string) []string {
	t.Helper()
	names, err := filepath.Glob(filepath.Join(dir, pattern))
	if err != nil || len(names) == 0 {
		t.Fatalf("no %s in %s (%v)", pattern, dir, err)
	}
	return names
}

// flipAt flips one bit of the byte at off in path, in place: the same
// inode, so a pebble that has the file open reads the damage.
func flipAt(t *testing.T, path string, off int64) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b := []byte{0}
	if _, err := f.ReadAt(b, off); err != nil {
		t.Fatal(err)
	}
	b[0] ^= 0x10
	if _, err := f.WriteAt(b, off); err != nil {
		t.Fatal(err)
	}
}

// flipIn flips a bit in the middle of the first occurrence of pat in
// path. Tables are written uncompressed enough for a 4 KiB random payload
// to appear verbatim (snappy does not shrink random data).
func flipIn(t *testing.T, path string, pat []byte) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	i := bytes.Index(b, pat)
	if i < 0 {
		t.Fatalf("pattern not found in %s", path)
	}
	flipAt(t, path, int64(i+len(pat)/2))
}

// payloadOf is a slice from the middle of a record's payload, long enough
// to occur nowhere else.
func payloadOf(r storage.Record) []byte { return r.Data[1000:1100] }

func mustApply(t *testing.T, e *pebble.Engine, id string, r storage.Record) {
	t.Helper()
	if ok, err := e.Apply(id, r); !ok || err != nil {
		t.Fatalf("Apply(%q) = %v, %v", id, ok, err)
	}
}

func TestTablePayloadCorruptionIsErrCorruptAndRepaired(t *testing.T) {
	dir := t.TempDir()
	e := open(t, dir)
	defer e.Close()
	a, b := rec(7, "n1"), rec(8, "n1")
	mustApply(t, e, "a", a)
	mustApply(t, e, "b", b)
	if err := e.FlushForTest(); err != nil {
		t.Fatal(err)
	}
	flipIn(t, files(t, dir, "*.sst")[0], payloadOf(a))

	_, err := e.Get("a")
	if !errors.Is(err, storage.ErrCorrupt) || !strings.Contains(err.Error(), "checksum mismatch") {
		t.Fatalf("Get of a damaged block = %v, want ErrCorrupt with pebble's message", err)
	}
	if h := e.Health(); !h.Corrupt || h.OK() || h.Failed {
		t.Fatalf("Health = %+v, want Corrupt only", h)
	}
	if got, err := e.Get("b"); err != nil {
		t.Fatalf("Get of an intact block: %v", err)
	} else {
		storagetest.CheckRecord(t, got, b)
	}
	// Read repair re-delivers the same version: it must replace the copy.
	if ok, err := e.Apply("a", a); !ok || err != nil {
		t.Fatalf("repair Apply = %v, %v; want true, nil", ok, err)
	}
	got, err := e.Get("a")
	if err != nil {
		t.Fatalf("Get after repair: %v", err)
	}
	storagetest.CheckRecord(t, got, a)
}

func TestTableMetadataCorruptionIsErrCorruptAndRepaired(t *testing.T) {
	dir := t.TempDir()
	e := open(t, dir)
	defer e.Close()
	// The node name appears only in metadata values.
	const node = "node-with-a-findable-name"
	a, b := rec(7, node), rec(8, node)
	mustApply(t, e, "a", a)
	mustApply(t, e, "b", b)
	if err := e.FlushForTest(); err != nil {
		t.Fatal(err)
	}
	flipIn(t, files(t, dir, "*.sst")[0], []byte(node))
	// Until then the cache answers with the committed metadata; the
	// damage shows on the next read of the table (and in every scan).
	e.DropMetaCacheForTest()

	if _, err := e.GetMeta("a"); !errors.Is(err, storage.ErrCorrupt) {
		t.Fatalf("GetMeta = %v, want ErrCorrupt", err)
	}
	if err := e.Scan("", func(string, storage.Meta) bool { return true }); !errors.Is(err, storage.ErrCorrupt) {
		t.Fatalf("Scan = %v, want ErrCorrupt", err)
	}
	if _, err := e.Remove("b", b.Version); !errors.Is(err, storage.ErrCorrupt) {
		t.Fatalf("Remove = %v, want ErrCorrupt", err)
	}
	// Unreadable metadata counts as absent: the good copy goes in.
	if ok, err := e.ApplyBatch([]storage.Item{{ID: "a", Record: a}, {ID: "b", Record: b}}); err != nil || !ok[0] || !ok[1] {
		t.Fatalf("repair ApplyBatch = %v, %v; want both applied", ok, err)
	}
	for id, want := range map[string]storage.Record{"a": a, "b": b} {
		got, err := e.Get(id)
		if err != nil {
			t.Fatalf("Get(%q) after repair: %v", id, err)
		}
		storagetest.CheckRecord(t, got, want)
	}
}

// TestOpenFindsDamageInEveryTable damages each table of a closed store in
// turn: damaged metadata fails Open (it counts records), a damaged payload
// fails the read of that record and no other.
func TestOpenFindsDamageInEveryTable(t *testing.T) {
	const node = "node-with-a-findable-name"
	recs := map[string]storage.Record{"a": rec(1, node), "b": rec(2, node), "c": rec(3, node)}
	// Compactions may merge tables at any time: build the store once and
	// give each case a copy.
	template := t.TempDir()
	e := open(t, template)
	for _, id := range []string{"a", "b", "c"} {
		mustApply(t, e, id, recs[id])
		if err := e.FlushForTest(); err != nil {
			t.Fatal(err)
		}
	}
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	build := func(t *testing.T) string {
		dir := t.TempDir()
		if err := os.CopyFS(dir, os.DirFS(template)); err != nil {
			t.Fatal(err)
		}
		return dir
	}
	tables := len(files(t, template, "*.sst"))
	for i := range tables {
		t.Run(fmt.Sprintf("metadata/table%d", i), func(t *testing.T) {
			dir := build(t)
			flipIn(t, files(t, dir, "*.sst")[i], []byte(node))
			_, err := openOpts(dir, &logLines{t: t})
			if !errors.Is(err, storage.ErrCorrupt) {
				t.Fatalf("Open = %v, want ErrCorrupt", err)
			}
		})
		t.Run(fmt.Sprintf("payload/table%d", i), func(t *testing.T) {
			dir := build(t)
			table := files(t, dir, "*.sst")[i]
			damaged := firstPayloadIn(t, table, recs)
			flipIn(t, table, payloadOf(recs[damaged]))
			e := open(t, dir)
			defer e.Close()
			for id := range recs {
				_, err := e.Get(id)
				if id == damaged && !errors.Is(err, storage.ErrCorrupt) {
					t.Errorf("Get(%q) = %v, want ErrCorrupt", id, err)
				}
				if id != damaged && err != nil {
					t.Errorf("Get(%q) = %v, want the record", id, err)
				}
			}
		})
	}
}

// firstPayloadIn returns the id of a record whose payload is in table.
func firstPayloadIn(t *testing.T, table string, recs map[string]storage.Record) string {
	t.Helper()
	b, err := os.ReadFile(table)
	if err != nil {
		t.Fatal(err)
	}
	for id, r := range recs {
		if bytes.Contains(b, payloadOf(r)) {
			return id
		}
	}
	t.Fatalf("no payload in %s", table)
	return ""
}

// writeWAL writes n records without flushing and closes the store, so
// they live only in the WAL.
func writeWAL(t *testing.T, n int) (dir string, recs []storage.Record) {
	dir = t.TempDir()
	e := open(t, dir)
	for i := range n {
		r := rec(uint64(i+1), "n1")
		mustApply(t, e, fmt.Sprintf("r%02d", i), r)
		recs = append(recs, r)
	}
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	return dir, recs
}

// TestOpenRefusesWALDamagedInTheMiddle: pebble v1.1.5 stops replaying the
// last WAL at the first bad record and opens without an error, losing the
// acknowledged writes after it. The engine must refuse to open instead.
func TestOpenRefusesWALDamagedInTheMiddle(t *testing.T) {
	dir, recs := writeWAL(t, 20)
	flipIn(t, files(t, dir, "*.log")[0], payloadOf(recs[5]))
	e, err := openOpts(dir, &logLines{t: t})
	if !errors.Is(err, storage.ErrCorrupt) {
		if e != nil {
			e.Close()
		}
		t.Fatalf("Open = %v, want ErrCorrupt", err)
	}
	// Refusing must not have changed the store: it fails again.
	if _, err := openOpts(dir, &logLines{t: t}); !errors.Is(err, storage.ErrCorrupt) {
		t.Fatalf("second Open = %v, want ErrCorrupt", err)
	}
}

// TestOpenToleratesTornWALTail: a crash can leave the last record half
// written. That is not corruption: every record before it is replayed.
func TestOpenToleratesTornWALTail(t *testing.T) {
	dir, recs := writeWAL(t, 20)
	wal := files(t, dir, "*.log")[0]
	b, err := os.ReadFile(wal)
	if err != nil {
		t.Fatal(err)
	}
	last := bytes.Index(b, payloadOf(recs[19]))
	if err := os.Truncate(wal, int64(last)); err != nil {
		t.Fatal(err)
	}
	e := open(t, dir)
	defer e.Close()
	for i, want := range recs[:19] {
		got, err := e.Get(fmt.Sprintf("r%02d", i))
		if err != nil {
			t.Fatalf("Get(r%02d): %v", i, err)
		}
		storagetest.CheckRecord(t, got, want)
	}
	if _, err := e.Get("r19"); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("torn record: %v, want ErrNotFound", err)
	}
}

// TestOpenRefusesManifestDamagedInTheMiddle: pebble v1.1.5 treats a bad
// MANIFEST record as its end, forgets the tables added after it and
// deletes them as obsolete. The engine must refuse to open instead.
func TestOpenRefusesManifestDamagedInTheMiddle(t *testing.T) {
	dir := t.TempDir()
	e := open(t, dir)
	for i := range 6 {
		mustApply(t, e, fmt.Sprintf("r%d", i), rec(uint64(i+1), "n1"))
		if err := e.FlushForTest(); err != nil { // one MANIFEST record each
			t.Fatal(err)
		}
	}
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	tables := files(t, dir, "*.sst")
	manifests := files(t, dir, "MANIFEST-*")
	manifest := manifests[len(manifests)-1]
	b, err := os.ReadFile(manifest)
	if err != nil {
		t.Fatal(err)
	}
	flipAt(t, manifest, middleChunkPayload(t, b))
	if _, err := openOpts(dir, &logLines{t: t}); !errors.Is(err, storage.ErrCorrupt) {
		t.Fatalf("Open = %v, want ErrCorrupt", err)
	}
	if got := files(t, dir, "*.sst"); !slices.Equal(got, tables) {
		t.Fatalf("tables %v after a refused open, want %v", got, tables)
	}
}

// middleChunkPayload returns an offset inside the payload of a chunk of a
// MANIFEST (7-byte headers: checksum, length, type) that has chunks after
// it, so the damage is in the middle.
func middleChunkPayload(t *testing.T, b []byte) int64 {
	t.Helper()
	var payloads [][2]int
	for i := 0; i+7 <= len(b); {
		if rest := 32<<10 - i%(32<<10); rest < 7 {
			i += rest
			continue
		}
		n := int(binary.LittleEndian.Uint16(b[i+4 : i+6]))
		if b[i+6] == 0 {
			break
		}
		payloads = append(payloads, [2]int{i + 7, n})
		i += 7 + n
	}
	if len(payloads) < 3 {
		t.Fatalf("MANIFEST has %d chunks, want at least 3", len(payloads))
	}
	p := payloads[len(payloads)/2]
	return int64(p[0] + p[1]/2)
}

// TestCompactionOverCorruptTableHaltsCompactions: pebble v1.1.5 retries a
// compaction that fails on a corrupt block at once, forever (~400 times a
// second). The engine must stop the loop, report the store corrupt, log
// the error once, and refuse writes before pebble stalls them for good.
func TestCompactionOverCorruptTableHaltsCompactions(t *testing.T) {
	dir := t.TempDir()
	logs := &logLines{t: t}
	e, err := openOpts(dir, logs)
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	version := uint64(0)
	writeAndFlush := func() error {
		for _, id := range []string{"a", "b"} {
			version++
			if _, err := e.Apply(id, rec(version, "n1")); err != nil {
				return err
			}
		}
		return e.FlushForTest()
	}
	if err := writeAndFlush(); err != nil {
		t.Fatal(err)
	}
	// Damage b's payload, the table's second block. (Pebble v1.1.5's
	// compaction iterator skips a bad first block without an error.)
	flipIn(t, files(t, dir, "*.sst")[0], payloadOf(rec(version, "n1")))

	deadline := time.Now().Add(20 * time.Second)
	for !e.Health().Corrupt {
		if time.Now().After(deadline) {
			t.Fatalf("no compaction failed on the corrupt table: %+v", e.Health())
		}
		if err := writeAndFlush(); err != nil {
			t.Fatal(err)
		}
	}
	compactions := e.CompactionsForTest()
	// Keep writing: each flush asks pebble to schedule compactions again.
	// Without compactions L0 fills up, and pebble then stalls writes for
	// good: the engine must refuse them first.
	done := make(chan error, 1)
	go func() {
		for range 20 {
			if err := writeAndFlush(); err != nil {
				done <- err
				return
			}
		}
		done <- nil
	}()
	var refused error
	select {
	case refused = <-done:
	case <-time.After(60 * time.Second):
		t.Fatal("writes stalled with compactions halted")
	}
	if !errors.Is(refused, storage.ErrFailed) {
		t.Fatalf("writes with compactions halted: %v, want ErrFailed before L0 stalls", refused)
	}
	h := e.Health()
	if h.BackgroundErrors > 2 || e.CompactionsForTest() != compactions {
		t.Fatalf("compactions went on after the corruption: %d background errors, %d compactions (was %d)",
			h.BackgroundErrors, e.CompactionsForTest(), compactions)
	}
	if !strings.Contains(h.CorruptReason, "checksum mismatch") || h.Failed {
		t.Fatalf("Health = %+v", h)
	}
	if n := logs.count("background error"); n != 1 {
		t.Fatalf("%d background error lines logged, want 1", n)
	}
	if _, err := e.Get("a"); err != nil {
		t.Fatalf("Get of an intact record: %v", err)
	}
}
