package pebble_test

import (
	"errors"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/goblocks/goblocks/node/storage"
	"github.com/goblocks/goblocks/node/storage/pebble"
	"github.com/goblocks/goblocks/node/storage/storagetest"
)

func open(t testing.TB, dir string) *pebble.Engine {
	t.Helper()
	return openWith(t, dir, pebble.Options{})
}

func openWith(t testing.TB, dir string, o pebble.Options) *pebble.Engine {
	t.Helper()
	o.Logf = func(format string, args ...any) { t.Logf(format, args...) }
	e, err := pebble.Open(dir, o)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	return e
}

func TestConformance(t *testing.T) {
	t.Run("position", func(t *testing.T) {
		storagetest.Run(t, storagetest.PositionOrder, func(t *testing.T) storage.Engine { return openWith(t, t.TempDir(), pebble.Options{ByPosition: true}) })
	})
	t.Run("id", func(t *testing.T) {
		storagetest.Run(t, storagetest.IDOrder, func(t *testing.T) storage.Engine { return open(t, t.TempDir()) })
	})
}

func rec(ts uint64, node string) storage.Record {
	v := storagetest.V(ts, node)
	return storage.NewRecord(storagetest.Block(ts), v)
}

func TestReopenKeepsRecordsAndCount(t *testing.T) {
	before := runtime.NumGoroutine()
	dir := t.TempDir()
	e := open(t, dir)

	want := make(map[string]storage.Record)
	apply := func(id string, r storage.Record) {
		t.Helper()
		if ok, err := e.Apply(id, r); !ok || err != nil {
			t.Fatalf("Apply(%q) = %v, %v", id, ok, err)
		}
		want[id] = r
	}
	for i := range 50 {
		apply(fmt.Sprintf("b%03d", i), rec(uint64(i+1), "n1"))
	}
	apply("b007", storage.NewTombstone(storagetest.V(100, "n1")))
	since := time.Unix(1_700_000_000, 5)
	if ok, err := e.MarkStale("b008", storagetest.V(9, "n1"), since); !ok || err != nil {
		t.Fatalf("MarkStale = %v, %v", ok, err)
	}
	r := want["b008"]
	r.StaleSince = since
	want["b008"] = r
	if ok, err := e.Remove("b009", storagetest.V(10, "n1")); !ok || err != nil {
		t.Fatalf("Remove = %v, %v", ok, err)
	}
	delete(want, "b009")
	items := make([]storage.Item, 0, 100)
	for i := range 100 {
		it := storage.Item{ID: fmt.Sprintf("c%03d", i), Record: rec(uint64(1000+i), "n2")}
		items = append(items, it)
		want[it.ID] = it.Record
	}
	if _, err := e.ApplyBatch(items); err != nil {
		t.Fatal(err)
	}
	count := e.Count()
	if count != 148 {
		t.Fatalf("Count() = %d, want 148", count)
	}
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}

	e = open(t, dir)
	defer e.Close()
	if got := e.Count(); got != count {
		t.Errorf("Count() after reopen = %d, want %d", got, count)
	}
	for id, w := range want {
		got, err := e.Get(id)
		if err != nil {
			t.Fatalf("Get(%q) after reopen: %v", id, err)
		}
		storagetest.CheckRecord(t, got, w)
	}
	if _, err := e.Get("b009"); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("removed record back after reopen: %v", err)
	}
	n := 0
	if err := e.Scan("", func(string, storage.Meta) bool { n++; return true }); err != nil {
		t.Fatal(err)
	}
	if n != len(want) {
		t.Errorf("Scan after reopen saw %d records, want %d", n, len(want))
	}
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}

	// Pebble's background goroutines must be gone after Close.
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > before {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<16)
			t.Fatalf("%d goroutines after Close, %d before:\n%s", runtime.NumGoroutine(), before, buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestCorruptPayloadDetectedAndRepaired(t *testing.T) {
	e := open(t, t.TempDir())
	defer e.Close()
	good := rec(7, "n1")
	if _, err := e.Apply("a", good); err != nil {
		t.Fatal(err)
	}
	if err := e.CorruptForTest("a"); err != nil {
		t.Fatal(err)
	}
	got, err := e.Get("a")
	if !errors.Is(err, storage.ErrCorrupt) {
		t.Fatalf("Get corrupt = %v, want ErrCorrupt", err)
	}
	if got.Data != nil {
		t.Fatal("Get returned data with ErrCorrupt")
	}
	// The metadata is intact, so scans and version probes still work.
	if _, err := e.GetMeta("a"); err != nil {
		t.Fatalf("GetMeta: %v", err)
	}
	// A re-delivery of the same version (read repair) replaces the copy.
	if ok, err := e.Apply("a", good); !ok || err != nil {
		t.Fatalf("repair Apply = %v, %v; want true, nil", ok, err)
	}
	got, err = e.Get("a")
	if err != nil {
		t.Fatalf("Get after repair: %v", err)
	}
	storagetest.CheckRecord(t, got, good)
	// An intact copy is not rewritten by a re-delivery.
	if ok, err := e.Apply("a", good); ok || err != nil {
		t.Fatalf("re-delivery onto intact copy = %v, %v; want false, nil", ok, err)
	}
	if e.Count() != 1 {
		t.Fatalf("Count() = %d, want 1", e.Count())
	}
}

func TestMissingPayloadIsCorrupt(t *testing.T) {
	e := open(t, t.TempDir())
	defer e.Close()
	if _, err := e.Apply("a", rec(1, "n")); err != nil {
		t.Fatal(err)
	}
	if err := e.DeleteRawForTest([]byte("d/a")); err != nil {
		t.Fatal(err)
	}
	if _, err := e.Get("a"); !errors.Is(err, storage.ErrCorrupt) {
		t.Fatalf("Get without payload = %v, want ErrCorrupt", err)
	}
	// A payload of the wrong length with a matching checksum is still caught.
	if err := e.SetRawForTest([]byte("d/a"), storagetest.Block(1)[:100]); err != nil {
		t.Fatal(err)
	}
	if _, err := e.Get("a"); !errors.Is(err, storage.ErrCorrupt) {
		t.Fatalf("Get short payload = %v, want ErrCorrupt", err)
	}
}

func TestUndecodableMetadata(t *testing.T) {
	dir := t.TempDir()
	e := open(t, dir)
	for _, id := range []string{"a", "b", "c"} {
		if _, err := e.Apply(id, rec(1, "n")); err != nil {
			t.Fatal(err)
		}
	}
	if err := e.SetRawForTest([]byte("m/b"), []byte{0xff, 0, 1}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.Get("b"); !errors.Is(err, storage.ErrCorrupt) {
		t.Fatalf("Get = %v, want ErrCorrupt", err)
	}
	if _, err := e.GetMeta("b"); !errors.Is(err, storage.ErrCorrupt) {
		t.Fatalf("GetMeta = %v, want ErrCorrupt", err)
	}
	if _, err := e.MarkStale("b", storagetest.V(1, "n"), time.Now()); !errors.Is(err, storage.ErrCorrupt) {
		t.Fatalf("MarkStale = %v, want ErrCorrupt", err)
	}
	if _, err := e.Remove("b", storagetest.V(1, "n")); !errors.Is(err, storage.ErrCorrupt) {
		t.Fatalf("Remove = %v, want ErrCorrupt", err)
	}
	var ids []string
	if err := e.Scan("", func(id string, _ storage.Meta) bool { ids = append(ids, id); return true }); err != nil {
		t.Fatal(err)
	}
	if strings.Join(ids, ",") != "a,c" {
		t.Fatalf("Scan = %v, want the decodable records a,c", ids)
	}
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}

	e = open(t, dir)
	defer e.Close()
	if got := e.Count(); got != 2 {
		t.Fatalf("Count() after reopen = %d, want 2 (undecodable not counted)", got)
	}
	// Any valid record replaces an undecodable one, even an old version.
	if ok, err := e.Apply("b", rec(1, "n")); !ok || err != nil {
		t.Fatalf("Apply over undecodable = %v, %v", ok, err)
	}
	if _, err := e.Get("b"); err != nil {
		t.Fatalf("Get after repair: %v", err)
	}
	if got := e.Count(); got != 3 {
		t.Fatalf("Count() = %d, want 3", got)
	}
}

func TestOptions(t *testing.T) {
	var o pebble.Options
	o.EnsureDefaults()
	if o.CacheSize != pebble.DefaultCacheSize || o.MemTableSize != pebble.DefaultMemTableSize || o.Logf == nil {
		t.Fatalf("EnsureDefaults = %+v", o)
	}
	if err := o.Validate(); err != nil {
		t.Fatalf("defaults invalid: %v", err)
	}
	for _, bad := range []pebble.Options{
		{CacheSize: 1, MemTableSize: pebble.DefaultMemTableSize},
		{CacheSize: pebble.DefaultCacheSize, MemTableSize: 1},
		{CacheSize: pebble.DefaultCacheSize, MemTableSize: 8 << 30},
	} {
		bad.EnsureDefaults()
		if bad.Validate() == nil {
			t.Errorf("Validate(%+v) = nil, want error", bad)
		}
		if _, err := pebble.Open(t.TempDir(), bad); err == nil {
			t.Errorf("Open(%+v) succeeded", bad)
		}
	}
}

func TestLongNodeNameRejected(t *testing.T) {
	e := open(t, t.TempDir())
	defer e.Close()
	v := storagetest.V(1, strings.Repeat("x", 256))
	if _, err := e.Apply("a", storage.NewRecord(storagetest.Block(1), v)); err == nil {
		t.Fatal("Apply with a 256-byte node name succeeded")
	}
}

// TestConcurrentReadersNeverSeeTornWrites hammers one id with writes of
// distinct payloads while readers check every Get: a Get that paired one
// write's metadata with another's payload would report ErrCorrupt.
func TestConcurrentReadersNeverSeeTornWrites(t *testing.T) {
	e := open(t, t.TempDir())
	defer e.Close()
	var wg sync.WaitGroup
	done := make(chan struct{})
	for range 4 {
		wg.Go(func() {
			for {
				select {
				case <-done:
					return
				default:
				}
				if _, err := e.Get("x"); err != nil && !errors.Is(err, storage.ErrNotFound) {
					t.Errorf("Get: %v", err)
					return
				}
			}
		})
	}
	for i := range 200 {
		if _, err := e.Apply("x", rec(uint64(i+1), "n")); err != nil {
			t.Fatal(err)
		}
	}
	close(done)
	wg.Wait()
}
