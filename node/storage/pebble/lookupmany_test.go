package pebble_test

import (
	"fmt"
	"math/rand/v2"
	"reflect"
	"testing"

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
