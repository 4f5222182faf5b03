package pebble_test

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/goblocks/goblocks/node/ring"
	"github.com/goblocks/goblocks/node/storage"
	"github.com/goblocks/goblocks/node/storage/pebble"
	"github.com/goblocks/goblocks/node/storage/storagetest"
)

// TestOpenConvertsIDLayout: a store written in id order (by an older
// version) is moved to the position layout when opened with ByPosition,
// even when a first conversion stopped after one batch; every record,
// tombstone and stale mark survives; the count is unchanged; and the
// converted store refuses to be opened in id order again.
func TestOpenConvertsIDLayout(t *testing.T) {
	dir := t.TempDir()
	old := open(t, dir)
	n := 2*pebble.ConvertBatch + 37
	want := map[string]storage.Record{}
	since := time.Unix(1_700_000_000, 0).UTC()
	for i := range n {
		id := fmt.Sprintf("old-%04d", i)
		r := rec(uint64(i+1), "n1")
		switch i % 7 {
		case 2:
			r = storage.NewTombstone(storagetest.V(uint64(i+1), "n1"))
		case 5:
			r.StaleSince = since
		}
		if ok, err := old.Apply(id, r); !ok || err != nil {
			t.Fatalf("Apply: %v %v", ok, err)
		}
		want[id] = r
	}
	count := old.Count()
	if err := old.Close(); err != nil {
		t.Fatal(err)
	}
	// A conversion that stopped after one batch.
	if moved, err := pebble.ConvertSomeForTest(dir); err != nil || moved != pebble.ConvertBatch {
		t.Fatalf("first batch: %d, %v", moved, err)
	}

	e := openWith(t, dir, pebble.Options{ByPosition: true})
	if e.Count() != count {
		t.Errorf("count %d after conversion, want %d", e.Count(), count)
	}
	for id, w := range want {
		m, err := e.GetMeta(id)
		if err != nil {
			t.Fatalf("GetMeta(%s): %v", id, err)
		}
		storagetest.CheckMeta(t, m, w.Meta())
		if !w.Tombstone {
			storagetest.CheckRecord(t, mustGet(t, e, id), w)
		}
	}
	var ids []string
	if err := e.ScanRange(ring.Range{Start: 0, End: 0}, func(id string, _ storage.Meta) bool {
		ids = append(ids, id)
		return true
	}); err != nil || len(ids) != n {
		t.Fatalf("ScanRange of the whole ring: %d ids, %v", len(ids), err)
	}
	if !slices.IsSortedFunc(ids, func(a, b string) int {
		return int(int64(ring.Position(a)>>1) - int64(ring.Position(b)>>1))
	}) {
		t.Error("converted records are not in position order")
	}
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}

	// Downgrading to the id layout would see an empty store: refused.
	if _, err := pebble.Open(dir, pebble.Options{}); err == nil || !strings.Contains(err.Error(), "layout") {
		t.Fatalf("id-layout open of a position store: %v", err)
	}
}

func mustGet(t *testing.T, e *pebble.Engine, id string) storage.Record {
	t.Helper()
	r, err := e.Get(id)
	if err != nil {
		t.Fatalf("Get(%s): %v", id, err)
	}
	return r
}

// TestScanRecordsReportsCorruptPayload: a payload that fails its checksum
// is handed to the caller as ErrCorrupt (so a migration fetches that
// block from another owner) and the scan goes on.
func TestScanRecordsReportsCorruptPayload(t *testing.T) {
	e := openWith(t, t.TempDir(), pebble.Options{ByPosition: true})
	defer e.Close()
	var items []storage.Item
	for i := range 50 {
		items = append(items, storage.Item{ID: fmt.Sprintf("c-%02d", i), Record: rec(uint64(i+1), "n1")})
	}
	if _, err := e.ApplyBatch(items); err != nil {
		t.Fatal(err)
	}
	if err := e.CorruptForTest("c-17"); err != nil {
		t.Fatal(err)
	}
	good, bad := 0, []string{}
	if err := e.ScanRecords(ring.Range{}, func(id string, r storage.Record, err error) bool {
		switch {
		case errors.Is(err, storage.ErrCorrupt):
			bad = append(bad, id)
		case err != nil:
			t.Fatalf("%s: %v", id, err)
		case len(r.Data) == 4096:
			good++
		}
		return true
	}); err != nil {
		t.Fatal(err)
	}
	if good != 49 || !slices.Equal(bad, []string{"c-17"}) {
		t.Fatalf("%d good records, corrupt %v; want 49 and [c-17]", good, bad)
	}
}
