package pebble_test

import (
	"fmt"
	"math/rand/v2"
	"reflect"
	"testing"
	"time"

	"github.com/goblocks/goblocks/node/storage"
	"github.com/goblocks/goblocks/node/storage/storagetest"
)

// Reading many ids' metadata in one ordered pass (cold cache, more misses
// than seekLookups) answers exactly what a point read per id answers:
// present, absent, tombstones, repeats, in any order, with part of the
// store flushed to tables and part in the memtable.
func TestGetMetasMatchesPointReads(t *testing.T) {
	e := open(t, t.TempDir())
	defer e.Close()
	var ids []string
	for i := range 300 {
		id := fmt.Sprintf("blk-%04d", i)
		rec := storage.NewRecord(storagetest.Block(uint64(i)), storagetest.V(uint64(i+1), "n"))
		if i%7 == 0 {
			rec = storage.NewTombstone(storagetest.V(uint64(i+1), "n"))
		}
		if _, err := e.Apply(id, rec); err != nil {
			t.Fatal(err)
		}
		if i == 150 {
			if err := e.FlushForTest(); err != nil {
				t.Fatal(err)
			}
		}
		if i%3 == 0 {
			ids = append(ids, id)
		}
	}
	for i := range 40 {
		ids = append(ids, fmt.Sprintf("absent-%d", i))
	}
	ids = append(ids, ids[5], ids[5], "blk-0007")
	rand.Shuffle(len(ids), func(i, j int) { ids[i], ids[j] = ids[j], ids[i] })

	e.DropMetaCacheForTest()
	got := e.GetMetas(ids)
	e.DropMetaCacheForTest()
	for i, id := range ids {
		m, err := e.GetMeta(id)
		want := storage.MetaResult{Meta: m, Err: err}
		if !reflect.DeepEqual(got[i].Meta, want.Meta) || (got[i].Err == nil) != (want.Err == nil) ||
			(want.Err != nil && got[i].Err.Error() != want.Err.Error()) {
			t.Errorf("%s: GetMetas %+v, GetMeta %+v", id, got[i], want)
		}
	}
}

// A batch applied with a cold cache judges each record against what is
// stored, as the one-record path does: older versions are refused, newer
// ones and new ids applied, repeated ids against the batch's own outcome.
func TestApplyBatchColdCache(t *testing.T) {
	e := open(t, t.TempDir())
	defer e.Close()
	for i := range 100 {
		if _, err := e.Apply(fmt.Sprintf("blk-%04d", i), storage.NewRecord(storagetest.Block(uint64(i)), storagetest.V(10, "n"))); err != nil {
			t.Fatal(err)
		}
	}
	e.DropMetaCacheForTest()
	var items []storage.Item
	var want []bool
	for i := range 150 {
		ts := uint64(5) // older than stored
		if i%2 == 0 {
			ts = 20
		}
		items = append(items, storage.Item{ID: fmt.Sprintf("blk-%04d", i), Record: storage.NewRecord(storagetest.Block(uint64(1000+i)), storagetest.V(ts, "n"))})
		want = append(want, i >= 100 || ts == 20)
	}
	// The same id twice: the second, older than the first, is refused.
	items = append(items, storage.Item{ID: "blk-0000", Record: storage.NewRecord(storagetest.Block(7), storagetest.V(15, "n"))})
	want = append(want, false)
	got, err := e.ApplyBatch(items)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("applied = %v\nwant      %v", got, want)
	}
	e.DropMetaCacheForTest()
	for i, it := range items[:150] {
		m, err := e.GetMeta(it.ID)
		wantV := storagetest.V(10, "n")
		if want[i] {
			wantV = it.Record.Version
		}
		if err != nil || m.Version != wantV {
			t.Errorf("%s: stored %v, %v; want %v", it.ID, m.Version, err, wantV)
		}
	}
}

// A GC pass's changes, judged with a cold cache in one ordered pass, happen
// exactly when their version still matches: marks and removals of the
// current version, nothing for an outdated one or an absent block.
func TestApplyChangesColdCache(t *testing.T) {
	e := open(t, t.TempDir())
	defer e.Close()
	for i := range 100 {
		if _, err := e.Apply(fmt.Sprintf("blk-%04d", i), storage.NewRecord(storagetest.Block(uint64(i)), storagetest.V(10, "n"))); err != nil {
			t.Fatal(err)
		}
	}
	e.DropMetaCacheForTest()
	since := time.Unix(1_700_000_000, 0)
	var changes []storage.Change
	var want []bool
	for i := range 120 {
		c := storage.Change{ID: fmt.Sprintf("blk-%04d", i), Version: storagetest.V(10, "n"), StaleSince: since}
		switch {
		case i%4 == 1:
			c.Version = storagetest.V(9, "n") // outdated: no change
		case i%4 == 2:
			c.Remove, c.StaleSince = true, time.Time{}
		}
		changes = append(changes, c)
		want = append(want, i < 100 && i%4 != 1)
	}
	done, err := e.ApplyChanges(changes)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(done, want) {
		t.Fatalf("done = %v\nwant   %v", done, want)
	}
	e.DropMetaCacheForTest()
	for i, c := range changes[:100] {
		m, err := e.GetMeta(c.ID)
		switch {
		case i%4 == 2:
			if err == nil {
				t.Errorf("%s: still there after its removal", c.ID)
			}
		case i%4 == 1:
			if err != nil || !m.StaleSince.IsZero() {
				t.Errorf("%s: %+v, %v; want unchanged", c.ID, m, err)
			}
		default:
			if err != nil || !m.StaleSince.Equal(since) {
				t.Errorf("%s: %+v, %v; want stale since %v", c.ID, m, err, since)
			}
		}
	}
}
