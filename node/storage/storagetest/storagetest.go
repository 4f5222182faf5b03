// Package storagetest is the conformance suite every storage.Engine must
// pass. An engine's tests call Run with a constructor; engine-specific
// behaviour (persistence, corruption on disk) is tested beside the engine.
package storagetest

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/goblocks/goblocks/node/hlc"
	"github.com/goblocks/goblocks/node/ring"
	"github.com/goblocks/goblocks/node/storage"
)

// BlockSize is the payload size the suite writes, the store's default.
const BlockSize = 4096

// Order is the key order an engine's Scan follows.
type Order int

const (
	// IDOrder: ascending id.
	IDOrder Order = iota
	// PositionOrder: ascending ring position, then id.
	PositionOrder
)

// before reports whether id a comes before id b in order o.
func (o Order) before(a, b string) bool {
	if o == PositionOrder {
		if pa, pb := ring.Position(a), ring.Position(b); pa != pb {
			return pa < pb
		}
	}
	return a < b
}

// sorted returns ids sorted in order o.
func (o Order) sorted(ids []string) []string {
	out := slices.Clone(ids)
	slices.SortFunc(out, func(a, b string) int {
		switch {
		case o.before(a, b):
			return -1
		case o.before(b, a):
			return 1
		}
		return 0
	})
	return out
}

// Run runs the conformance suite. open must return a new, empty engine
// for each call; the suite closes it (a second Close returning
// storage.ErrClosed is expected and ignored). order is the engine's Scan
// order; an IDOrder engine may refuse ScanRange with ErrUnordered.
// Subtests run in parallel.
func Run(t *testing.T, order Order, open func(t *testing.T) storage.Engine) {
	tests := []struct {
		name string
		fn   func(t *testing.T, e storage.Engine)
	}{
		{"GetMissing", testGetMissing},
		{"RoundTrip", testRoundTrip},
		{"ApplyIfNewer", testApplyIfNewer},
		{"SameVersionUnstales", testSameVersionUnstales},
		{"Tombstones", testTombstones},
		{"ChecksumMismatch", testChecksumMismatch},
		{"ZeroVersionRefused", testZeroVersionRefused},
		{"MarkStale", testMarkStale},
		{"Remove", testRemove},
		{"ApplyChanges", testApplyChanges},
		{"Scan", func(t *testing.T, e storage.Engine) { testScan(t, e, order) }},
		{"ScanRange", func(t *testing.T, e storage.Engine) { testScanRange(t, e, order) }},
		{"ScanRecords", func(t *testing.T, e storage.Engine) { testScanRecords(t, e, order) }},
		{"ScanCallbackUsesEngine", testScanCallbackUsesEngine},
		{"ApplyBatch", testApplyBatch},
		{"GetMetas", testGetMetas},
		{"Count", testCount},
		{"ConcurrentSameID", testConcurrentSameID},
		{"ConcurrentDistinctIDs", testConcurrentDistinctIDs},
		{"Close", testClose},
		{"CloseDuringWrites", testCloseDuringWrites},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := open(t)
			t.Cleanup(func() {
				if err := e.Close(); err != nil && !errors.Is(err, storage.ErrClosed) {
					t.Errorf("Close: %v", err)
				}
			})
			tc.fn(t, e)
		})
	}
}

// testZeroVersionRefused: a record without a version is never stored, on
// its own or in a batch.
func testZeroVersionRefused(t *testing.T, e storage.Engine) {
	for _, v := range []hlc.Version{{}, {Timestamp: 0, Node: "n1"}, {Timestamp: 5, Node: ""}} {
		if ok, err := e.Apply("z", storage.NewRecord(Block(1), v)); ok || !errors.Is(err, storage.ErrZeroVersion) {
			t.Errorf("Apply at %q = %v, %v; want ErrZeroVersion", v, ok, err)
		}
		if _, err := e.ApplyBatch([]storage.Item{{ID: "z", Record: storage.NewTombstone(v)}}); !errors.Is(err, storage.ErrZeroVersion) {
			t.Errorf("ApplyBatch at %q: %v; want ErrZeroVersion", v, err)
		}
	}
	if _, err := e.Get("z"); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("Get after refused writes: %v", err)
	}
}

// V builds a version.
func V(ts uint64, node string) hlc.Version {
	return hlc.Version{Timestamp: hlc.Timestamp(ts), Node: node}
}

// Block returns a deterministic BlockSize payload derived from seed, so a
// payload identifies the write that produced it.
func Block(seed uint64) []byte {
	r := rand.New(rand.NewPCG(seed, 0x9e3779b97f4a7c15))
	b := make([]byte, BlockSize)
	for i := 0; i < len(b); i += 8 {
		v := r.Uint64()
		for j := range 8 {
			b[i+j] = byte(v >> (8 * j))
		}
	}
	return b
}

// blockFor derives the payload from the version, so a reader can check
// that the data it got belongs to the version it got.
func blockFor(v hlc.Version) []byte {
	seed := uint64(v.Timestamp)
	for _, c := range []byte(v.Node) {
		seed = seed*31 + uint64(c)
	}
	return Block(seed)
}

func rec(v hlc.Version) storage.Record { return storage.NewRecord(blockFor(v), v) }

func mustApply(t *testing.T, e storage.Engine, id string, r storage.Record, want bool) {
	t.Helper()
	got, err := e.Apply(id, r)
	if err != nil {
		t.Fatalf("Apply(%q, %v): %v", id, r.Version, err)
	}
	if got != want {
		t.Fatalf("Apply(%q, %v) = %v, want %v", id, r.Version, got, want)
	}
}

func mustGet(t *testing.T, e storage.Engine, id string) storage.Record {
	t.Helper()
	r, err := e.Get(id)
	if err != nil {
		t.Fatalf("Get(%q): %v", id, err)
	}
	return r
}

func wantCount(t *testing.T, e storage.Engine, want int64) {
	t.Helper()
	if got := e.Count(); got != want {
		t.Fatalf("Count() = %d, want %d", got, want)
	}
}

// CheckRecord fails t unless got equals want (StaleSince compared as an
// instant, nil and empty payloads equal).
func CheckRecord(t *testing.T, got, want storage.Record) {
	t.Helper()
	if !bytes.Equal(got.Data, want.Data) {
		t.Errorf("payload differs (len %d vs %d)", len(got.Data), len(want.Data))
	}
	CheckMeta(t, got.Meta(), want.Meta())
}

// CheckMeta fails t unless got equals want.
func CheckMeta(t *testing.T, got, want storage.Meta) {
	t.Helper()
	if got.Version != want.Version || got.Checksum != want.Checksum || got.Size != want.Size ||
		got.Tombstone != want.Tombstone || !got.StaleSince.Equal(want.StaleSince) || got.StaleSince.IsZero() != want.StaleSince.IsZero() {
		t.Errorf("meta = %+v, want %+v", got, want)
	}
}

func testGetMissing(t *testing.T, e storage.Engine) {
	if _, err := e.Get("nope"); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("Get missing: err = %v, want ErrNotFound", err)
	}
	if _, err := e.GetMeta("nope"); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("GetMeta missing: err = %v, want ErrNotFound", err)
	}
	wantCount(t, e, 0)
}

func testRoundTrip(t *testing.T, e storage.Engine) {
	v := V(100, "n1")
	data := blockFor(v)
	orig := bytes.Clone(data)
	mustApply(t, e, "a", storage.NewRecord(data, v), true)
	// The engine must have copied the payload.
	for i := range data {
		data[i] ^= 0xff
	}
	got := mustGet(t, e, "a")
	want := storage.NewRecord(orig, v)
	CheckRecord(t, got, want)
	// The returned slice belongs to the caller.
	got.Data[0] ^= 0xff
	CheckRecord(t, mustGet(t, e, "a"), want)

	m, err := e.GetMeta("a")
	if err != nil {
		t.Fatalf("GetMeta: %v", err)
	}
	CheckMeta(t, m, want.Meta())
	if m.Size != BlockSize {
		t.Errorf("Size = %d, want %d", m.Size, BlockSize)
	}
	wantCount(t, e, 1)
}

func testApplyIfNewer(t *testing.T, e storage.Engine) {
	mustApply(t, e, "a", rec(V(10, "b")), true)
	mustApply(t, e, "a", rec(V(9, "z")), false) // older timestamp
	// Equal version with other content: rejected, content unchanged.
	mustApply(t, e, "a", storage.NewRecord(Block(1), V(10, "b")), false)
	mustApply(t, e, "a", rec(V(10, "a")), false) // tie, lower name
	CheckRecord(t, mustGet(t, e, "a"), rec(V(10, "b")))

	mustApply(t, e, "a", rec(V(10, "c")), true) // tie, higher name wins
	CheckRecord(t, mustGet(t, e, "a"), rec(V(10, "c")))
	mustApply(t, e, "a", rec(V(11, "a")), true)
	mustApply(t, e, "a", rec(V(10, "z")), false)
	CheckRecord(t, mustGet(t, e, "a"), rec(V(11, "a")))
	wantCount(t, e, 1)
}

func testSameVersionUnstales(t *testing.T, e storage.Engine) {
	v := V(5, "n")
	since := time.Unix(1_700_000_000, 123).UTC()
	stale := rec(v)
	stale.StaleSince = since

	// Stale incoming onto owned stored: rejected, stays owned.
	mustApply(t, e, "a", rec(v), true)
	mustApply(t, e, "a", stale, false)
	if r := mustGet(t, e, "a"); r.Stale() {
		t.Fatalf("owned copy became stale: %v", r.StaleSince)
	}

	// Stale stored, owned incoming of the same version: un-staled.
	mustApply(t, e, "b", stale, true)
	CheckRecord(t, mustGet(t, e, "b"), stale)
	mustApply(t, e, "b", stale, false) // stale onto stale: nothing to do
	mustApply(t, e, "b", rec(v), true)
	CheckRecord(t, mustGet(t, e, "b"), rec(v))
	mustApply(t, e, "b", rec(v), false)
	wantCount(t, e, 2)
}

func testTombstones(t *testing.T, e storage.Engine) {
	mustApply(t, e, "a", rec(V(1, "n")), true)
	wantCount(t, e, 1)
	mustApply(t, e, "a", storage.NewTombstone(V(2, "n")), true)
	wantCount(t, e, 0)

	got := mustGet(t, e, "a")
	if !got.Tombstone || len(got.Data) != 0 || got.Version != V(2, "n") {
		t.Fatalf("Get tombstone = %+v", got.Meta())
	}
	CheckRecord(t, got, storage.NewTombstone(V(2, "n")))
	m, err := e.GetMeta("a")
	if err != nil || !m.Tombstone || m.Size != 0 {
		t.Fatalf("GetMeta tombstone = %+v, %v", m, err)
	}

	// A late replica of an older write must not resurrect the block.
	mustApply(t, e, "a", rec(V(1, "n")), false)
	mustApply(t, e, "a", rec(V(2, "m")), false)
	wantCount(t, e, 0)
	if !mustGet(t, e, "a").Tombstone {
		t.Fatal("older write resurrected a tombstone")
	}

	// A newer write does.
	mustApply(t, e, "a", rec(V(3, "n")), true)
	wantCount(t, e, 1)
	CheckRecord(t, mustGet(t, e, "a"), rec(V(3, "n")))

	// A tombstone for a block never seen is stored and not counted.
	mustApply(t, e, "b", storage.NewTombstone(V(4, "n")), true)
	wantCount(t, e, 1)
	// A tombstone carrying a payload stores none.
	ts := storage.NewRecord(Block(7), V(5, "n"))
	ts.Tombstone = true
	mustApply(t, e, "c", ts, true)
	if got := mustGet(t, e, "c"); len(got.Data) != 0 || !got.Tombstone {
		t.Fatalf("tombstone with payload stored as %+v", got.Meta())
	}
	wantCount(t, e, 1)
}

func testChecksumMismatch(t *testing.T, e storage.Engine) {
	r := rec(V(1, "n"))
	r.Checksum ^= 1
	if _, err := e.Apply("a", r); !errors.Is(err, storage.ErrCorrupt) {
		t.Fatalf("Apply bad checksum: err = %v, want ErrCorrupt", err)
	}
	// Data altered after the checksum was computed.
	r = rec(V(1, "n"))
	r.Data[17] ^= 4
	if _, err := e.Apply("a", r); !errors.Is(err, storage.ErrCorrupt) {
		t.Fatalf("Apply flipped payload: err = %v, want ErrCorrupt", err)
	}
	if _, err := e.Get("a"); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("Get after rejected apply: %v, want ErrNotFound", err)
	}
	// One bad item rejects the whole batch.
	_, err := e.ApplyBatch([]storage.Item{{ID: "b", Record: rec(V(1, "n"))}, {ID: "c", Record: r}})
	if !errors.Is(err, storage.ErrCorrupt) {
		t.Fatalf("ApplyBatch with bad item: err = %v, want ErrCorrupt", err)
	}
	if _, err := e.Get("b"); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("good item of rejected batch stored: %v", err)
	}
	wantCount(t, e, 0)
}

func testMarkStale(t *testing.T, e storage.Engine) {
	since := time.Unix(1_700_000_000, 42).UTC()
	if ok, err := e.MarkStale("none", V(1, "n"), since); ok || err != nil {
		t.Fatalf("MarkStale missing = %v, %v; want false, nil", ok, err)
	}
	mustApply(t, e, "a", rec(V(2, "n")), true)
	for _, v := range []hlc.Version{V(1, "n"), V(3, "n"), V(2, "m"), V(2, "o")} {
		if ok, err := e.MarkStale("a", v, since); ok || err != nil {
			t.Fatalf("MarkStale version %v = %v, %v; want false, nil", v, ok, err)
		}
	}
	if r := mustGet(t, e, "a"); r.Stale() {
		t.Fatal("mismatched MarkStale changed the record")
	}
	if ok, err := e.MarkStale("a", V(2, "n"), since); !ok || err != nil {
		t.Fatalf("MarkStale = %v, %v; want true, nil", ok, err)
	}
	want := rec(V(2, "n"))
	want.StaleSince = since
	CheckRecord(t, mustGet(t, e, "a"), want) // payload untouched
	m, _ := e.GetMeta("a")
	CheckMeta(t, m, want.Meta())
	wantCount(t, e, 1) // stale copies still count

	// Marking again is idempotent; a zero time makes it owned again.
	if ok, err := e.MarkStale("a", V(2, "n"), since); !ok || err != nil {
		t.Fatalf("second MarkStale = %v, %v", ok, err)
	}
	if ok, err := e.MarkStale("a", V(2, "n"), time.Time{}); !ok || err != nil {
		t.Fatalf("MarkStale(zero) = %v, %v", ok, err)
	}
	CheckRecord(t, mustGet(t, e, "a"), rec(V(2, "n")))

	// A newer write in between wins.
	mustApply(t, e, "a", rec(V(3, "n")), true)
	if ok, _ := e.MarkStale("a", V(2, "n"), since); ok {
		t.Fatal("MarkStale with a superseded version succeeded")
	}
	if mustGet(t, e, "a").Stale() {
		t.Fatal("newer record marked stale")
	}

	// Tombstones can be stale too.
	mustApply(t, e, "t", storage.NewTombstone(V(4, "n")), true)
	if ok, err := e.MarkStale("t", V(4, "n"), since); !ok || err != nil {
		t.Fatalf("MarkStale tombstone = %v, %v", ok, err)
	}
	if r := mustGet(t, e, "t"); !r.Tombstone || !r.StaleSince.Equal(since) {
		t.Fatalf("stale tombstone = %+v", r.Meta())
	}
	wantCount(t, e, 1)
}

func testRemove(t *testing.T, e storage.Engine) {
	if ok, err := e.Remove("none", V(1, "n")); ok || err != nil {
		t.Fatalf("Remove missing = %v, %v; want false, nil", ok, err)
	}
	mustApply(t, e, "a", rec(V(2, "n")), true)
	mustApply(t, e, "b", rec(V(2, "n")), true)
	for _, v := range []hlc.Version{V(1, "n"), V(3, "n"), V(2, "m")} {
		if ok, err := e.Remove("a", v); ok || err != nil {
			t.Fatalf("Remove version %v = %v, %v; want false, nil", v, ok, err)
		}
	}
	CheckRecord(t, mustGet(t, e, "a"), rec(V(2, "n")))
	wantCount(t, e, 2)

	if ok, err := e.Remove("a", V(2, "n")); !ok || err != nil {
		t.Fatalf("Remove = %v, %v; want true, nil", ok, err)
	}
	if _, err := e.Get("a"); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("Get removed: %v, want ErrNotFound", err)
	}
	if _, err := e.GetMeta("a"); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("GetMeta removed: %v, want ErrNotFound", err)
	}
	wantCount(t, e, 1)
	if ok, _ := e.Remove("a", V(2, "n")); ok {
		t.Fatal("second Remove succeeded")
	}

	// Purging a tombstone leaves the count alone.
	mustApply(t, e, "b", storage.NewTombstone(V(3, "n")), true)
	wantCount(t, e, 0)
	if ok, err := e.Remove("b", V(3, "n")); !ok || err != nil {
		t.Fatalf("Remove tombstone = %v, %v", ok, err)
	}
	wantCount(t, e, 0)
	// After a purge any write is accepted again.
	mustApply(t, e, "b", rec(V(1, "n")), true)
	wantCount(t, e, 1)
}

// testApplyChanges: many stale marks and removals in one call, each
// conditional on its version like MarkStale and Remove.
func testApplyChanges(t *testing.T, e storage.Engine) {
	since := time.Unix(1_700_000_000, 0).UTC()
	mustApply(t, e, "mark", rec(V(1, "n")), true)
	mustApply(t, e, "unmark", rec(V(2, "n")), true)
	if ok, err := e.MarkStale("unmark", V(2, "n"), since); !ok || err != nil {
		t.Fatal(ok, err)
	}
	mustApply(t, e, "remove", rec(V(3, "n")), true)
	mustApply(t, e, "purge", storage.NewTombstone(V(4, "n")), true)
	mustApply(t, e, "newer", rec(V(9, "n")), true)
	// Stale copies: one still stale since the time its removal was
	// decided, one a transfer made owned again in between (the same
	// version, sent as owned), one marked anew.
	for _, id := range []string{"collect", "reowned", "remarked"} {
		mustApply(t, e, id, rec(V(6, "n")), true)
		if ok, err := e.MarkStale(id, V(6, "n"), since); !ok || err != nil {
			t.Fatal(ok, err)
		}
	}
	mustApply(t, e, "reowned", rec(V(6, "n")), true)
	if ok, err := e.MarkStale("remarked", V(6, "n"), since.Add(time.Second)); !ok || err != nil {
		t.Fatal(ok, err)
	}
	wantCount(t, e, 7)
	done, err := e.ApplyChanges([]storage.Change{
		{ID: "mark", Version: V(1, "n"), StaleSince: since},
		{ID: "unmark", Version: V(2, "n")},
		{ID: "remove", Version: V(3, "n"), Remove: true},
		{ID: "purge", Version: V(4, "n"), Remove: true},
		{ID: "newer", Version: V(5, "n"), Remove: true}, // a newer write won
		{ID: "missing", Version: V(1, "n"), StaleSince: since},
		{ID: "collect", Version: V(6, "n"), Remove: true, StaleSince: since},
		{ID: "reowned", Version: V(6, "n"), Remove: true, StaleSince: since},
		{ID: "remarked", Version: V(6, "n"), Remove: true, StaleSince: since},
	})
	if err != nil || !slices.Equal(done, []bool{true, true, true, true, false, false, true, false, false}) {
		t.Fatalf("ApplyChanges = %v, %v", done, err)
	}
	for _, id := range []string{"reowned", "remarked"} {
		if _, err := e.GetMeta(id); err != nil {
			t.Errorf("%s removed though its stale mark changed after the removal was decided: %v", id, err)
		}
	}
	if m, err := e.GetMeta("mark"); err != nil || !m.StaleSince.Equal(since) {
		t.Errorf("mark: %+v, %v", m, err)
	}
	if m, err := e.GetMeta("unmark"); err != nil || !m.StaleSince.IsZero() {
		t.Errorf("unmark: %+v, %v", m, err)
	}
	for _, id := range []string{"remove", "purge"} {
		if _, err := e.GetMeta(id); !errors.Is(err, storage.ErrNotFound) {
			t.Errorf("%s still there: %v", id, err)
		}
	}
	CheckRecord(t, mustGet(t, e, "newer"), rec(V(9, "n")))
	wantCount(t, e, 5)
	if done, err := e.ApplyChanges(nil); err != nil || len(done) != 0 {
		t.Errorf("no changes: %v, %v", done, err)
	}
}

// scanAll collects a scan from after.
func scanAll(t *testing.T, e storage.Engine, after string) ([]string, map[string]storage.Meta) {
	t.Helper()
	var ids []string
	metas := make(map[string]storage.Meta)
	if err := e.Scan(after, func(id string, m storage.Meta) bool {
		ids = append(ids, id)
		metas[id] = m
		return true
	}); err != nil {
		t.Fatalf("Scan(%q): %v", after, err)
	}
	return ids, metas
}

func testScan(t *testing.T, e storage.Engine, order Order) {
	// More ids than one read chunk of a chunking engine, applied in a
	// random order in batches.
	const n = 1100
	ids := make([]string, n)
	want := make(map[string]storage.Meta, n)
	items := make([]storage.Item, 0, n)
	since := time.Unix(1_700_000_000, 0).UTC()
	for i := range ids {
		ids[i] = fmt.Sprintf("blk-%05d", i)
		var r storage.Record
		switch i % 10 {
		case 3:
			r = storage.NewTombstone(V(uint64(i+1), "n"))
		case 7:
			r = rec(V(uint64(i+1), "n"))
			r.StaleSince = since
		default:
			r = rec(V(uint64(i+1), "n"))
		}
		items = append(items, storage.Item{ID: ids[i], Record: r})
		want[ids[i]] = r.Meta()
	}
	rand.Shuffle(len(items), func(i, j int) { items[i], items[j] = items[j], items[i] })
	for chunk := range slices.Chunk(items, 300) {
		if _, err := e.ApplyBatch(chunk); err != nil {
			t.Fatalf("ApplyBatch: %v", err)
		}
	}

	ids = order.sorted(ids)
	got, metas := scanAll(t, e, "")
	if !slices.Equal(got, ids) {
		t.Fatalf("Scan returned %d ids, want %d in order", len(got), len(ids))
	}
	for id, m := range metas {
		CheckMeta(t, m, want[id])
	}

	// Resumption: strictly after an existing id, and after ids that are
	// not stored.
	for _, k := range []int{0, 511, 512, 513, 1000, n - 1} {
		got, _ := scanAll(t, e, ids[k])
		if !slices.Equal(got, ids[k+1:]) {
			t.Fatalf("Scan after %q: %d ids, want %d", ids[k], len(got), n-k-1)
		}
	}
	for _, missing := range []string{"blk-00499x", "zzz", "0"} {
		i := slices.IndexFunc(ids, func(id string) bool { return order.before(missing, id) })
		if i < 0 {
			i = len(ids)
		}
		got, _ = scanAll(t, e, missing)
		if !slices.Equal(got, ids[i:]) {
			t.Fatalf("Scan after the missing id %q: %d ids, want %d", missing, len(got), n-i)
		}
	}

	// Early stop: fn returning false ends the scan at once.
	calls := 0
	if err := e.Scan("", func(string, storage.Meta) bool { calls++; return calls < 3 }); err != nil {
		t.Fatal(err)
	}
	if calls != 3 {
		t.Fatalf("Scan after stop: %d calls, want 3", calls)
	}
	calls = 0
	if err := e.Scan("", func(string, storage.Meta) bool { calls++; return calls < 600 }); err != nil {
		t.Fatal(err)
	}
	if calls != 600 {
		t.Fatalf("Scan after stop across a chunk: %d calls, want 600", calls)
	}
	wantCount(t, e, n-n/10)
}

// testScanRange: ScanRange returns exactly the records whose position is
// in the arc, clockwise from its start, across the wrap, and stops when
// told to.
func testScanRange(t *testing.T, e storage.Engine, order Order) {
	const n = 1100
	ids := make([]string, n)
	items := make([]storage.Item, n)
	for i := range ids {
		ids[i] = fmt.Sprintf("arc-%05d", i)
		items[i] = storage.Item{ID: ids[i], Record: rec(V(uint64(i+1), "n"))}
	}
	for chunk := range slices.Chunk(items, 300) {
		if _, err := e.ApplyBatch(chunk); err != nil {
			t.Fatalf("ApplyBatch: %v", err)
		}
	}
	err := e.ScanRange(ring.Range{}, func(string, storage.Meta) bool { return true })
	if order == IDOrder && errors.Is(err, storage.ErrUnordered) {
		return // an id-ordered engine may not support arcs
	}
	if err != nil {
		t.Fatalf("ScanRange: %v", err)
	}
	byPos := PositionOrder.sorted(ids)
	pos := func(i int) uint64 { return ring.Position(byPos[i]) }
	// want lists the ids in r clockwise from r.Start.
	want := func(r ring.Range) []string {
		var in []string
		for _, id := range byPos {
			if r.Contains(ring.Position(id)) {
				in = append(in, id)
			}
		}
		if r.Start > r.End || r.Start == r.End {
			// Clockwise from Start: the part after Start comes first.
			k := slices.IndexFunc(in, func(id string) bool { return ring.Position(id) > r.Start })
			if k > 0 {
				in = append(in[k:], in[:k]...)
			}
		}
		return in
	}
	for _, r := range []ring.Range{
		{},                                  // the whole ring
		{Start: pos(500), End: pos(500)},    // the whole ring, from an occupied position
		{Start: pos(100), End: pos(400)},    // an ordinary arc, both ends occupied
		{Start: pos(100) - 1, End: pos(99)}, // from just before an occupied position: includes it
		{Start: pos(900), End: pos(50)},     // wrapping
		{Start: math.MaxUint64, End: pos(10)},
		{Start: pos(1000), End: math.MaxUint64},
		{Start: pos(5), End: pos(5) + 1}, // empty of records
	} {
		var got []string
		if err := e.ScanRange(r, func(id string, m storage.Meta) bool {
			got = append(got, id)
			return true
		}); err != nil {
			t.Fatalf("ScanRange(%v): %v", r, err)
		}
		if w := want(r); !slices.Equal(got, w) {
			t.Errorf("ScanRange(%v): %d ids, want %d in clockwise order", r, len(got), len(w))
		}
	}
	// Early stop, across the wrap and across a chunk.
	for _, stopAt := range []int{3, 600} {
		calls := 0
		if err := e.ScanRange(ring.Range{Start: pos(800), End: pos(700)}, func(string, storage.Meta) bool {
			calls++
			return calls < stopAt
		}); err != nil || calls != stopAt {
			t.Fatalf("ScanRange stopping at %d: %d calls, %v", stopAt, calls, err)
		}
	}
}

// testScanRecords: ScanRecords returns what ScanRange lists, in the same
// order, each record as Get returns it (tombstones and stale copies
// included), and stops when told to.
func testScanRecords(t *testing.T, e storage.Engine, order Order) {
	const n = 700 // more than one chunk of a chunking engine
	since := time.Unix(1_700_000_000, 0).UTC()
	var items []storage.Item
	for i := range n {
		r := rec(V(uint64(i+1), "n"))
		switch i % 9 {
		case 4:
			r = storage.NewTombstone(V(uint64(i+1), "n"))
		case 7:
			r.StaleSince = since
		}
		items = append(items, storage.Item{ID: fmt.Sprintf("rec-%04d", i), Record: r})
	}
	if _, err := e.ApplyBatch(items); err != nil {
		t.Fatal(err)
	}
	arc := ring.Range{Start: ring.Position("rec-0100"), End: ring.Position("rec-0050")}
	var listed []string
	err := e.ScanRange(arc, func(id string, _ storage.Meta) bool { listed = append(listed, id); return true })
	if order == IDOrder && errors.Is(err, storage.ErrUnordered) {
		if err := e.ScanRecords(arc, func(string, storage.Record, error) bool { return true }); !errors.Is(err, storage.ErrUnordered) {
			t.Fatalf("ScanRecords on an id-ordered engine: %v, want ErrUnordered", err)
		}
		return
	}
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	if err := e.ScanRecords(arc, func(id string, r storage.Record, err error) bool {
		if err != nil {
			t.Fatalf("ScanRecords %s: %v", id, err)
		}
		got = append(got, id)
		CheckRecord(t, r, mustGet(t, e, id))
		return true
	}); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got, listed) || len(got) < n/2 {
		t.Fatalf("ScanRecords returned %d ids, ScanRange %d (of %d)", len(got), len(listed), n)
	}
	calls := 0
	if err := e.ScanRecords(ring.Range{}, func(string, storage.Record, error) bool { calls++; return calls < 300 }); err != nil || calls != 300 {
		t.Fatalf("ScanRecords stopping at 300: %d calls, %v", calls, err)
	}
}

func testScanCallbackUsesEngine(t *testing.T, e storage.Engine) {
	for i := range 20 {
		mustApply(t, e, fmt.Sprintf("k%02d", i), rec(V(uint64(i+1), "n")), true)
	}
	// Garbage collection removes what it scans; the engine must allow it.
	err := e.Scan("", func(id string, m storage.Meta) bool {
		if _, err := e.Get(id); err != nil {
			t.Errorf("Get in scan: %v", err)
		}
		if ok, err := e.Remove(id, m.Version); !ok || err != nil {
			t.Errorf("Remove in scan = %v, %v", ok, err)
		}
		return true
	})
	if err != nil {
		t.Fatal(err)
	}
	wantCount(t, e, 0)
}

// testGetMetas: each answer is what GetMeta answers for that id, for
// present, absent and deleted blocks, repeats included.
func testGetMetas(t *testing.T, e storage.Engine) {
	var ids []string
	for i := range 40 {
		id := fmt.Sprintf("m%02d", i)
		rec := storage.NewRecord(Block(uint64(i)), V(uint64(i+1), "n"))
		if i%5 == 0 {
			rec = storage.NewTombstone(V(uint64(i+1), "n"))
		}
		if _, err := e.Apply(id, rec); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id, "absent-"+id)
	}
	ids = append(ids, "m03", "m03")
	got := e.GetMetas(ids)
	if len(got) != len(ids) {
		t.Fatalf("%d answers for %d ids", len(got), len(ids))
	}
	for i, id := range ids {
		m, err := e.GetMeta(id)
		if got[i].Meta != m || (got[i].Err == nil) != (err == nil) || (err != nil && errors.Is(err, storage.ErrNotFound) != errors.Is(got[i].Err, storage.ErrNotFound)) {
			t.Errorf("%s: GetMetas %+v; GetMeta %+v, %v", id, got[i], m, err)
		}
	}
}

func testApplyBatch(t *testing.T, e storage.Engine) {
	got, err := e.ApplyBatch(nil)
	if err != nil || len(got) != 0 {
		t.Fatalf("ApplyBatch(nil) = %v, %v", got, err)
	}
	mustApply(t, e, "old", rec(V(5, "n")), true)
	mustApply(t, e, "gone", rec(V(5, "n")), true)
	items := []storage.Item{
		{ID: "new", Record: rec(V(1, "n"))},                   // new id
		{ID: "old", Record: rec(V(4, "n"))},                   // older than stored
		{ID: "old", Record: rec(V(6, "n"))},                   // newer
		{ID: "dup", Record: rec(V(1, "n"))},                   // duplicates apply in order
		{ID: "dup", Record: rec(V(3, "n"))},                   //
		{ID: "dup", Record: rec(V(2, "n"))},                   // older than the item before
		{ID: "gone", Record: storage.NewTombstone(V(6, "n"))}, // delete
		{ID: "gone", Record: rec(V(5, "z"))},                  // older than the tombstone
	}
	got, err = e.ApplyBatch(items)
	if err != nil {
		t.Fatal(err)
	}
	want := []bool{true, false, true, true, true, false, true, false}
	if !slices.Equal(got, want) {
		t.Fatalf("ApplyBatch = %v, want %v", got, want)
	}
	CheckRecord(t, mustGet(t, e, "new"), rec(V(1, "n")))
	CheckRecord(t, mustGet(t, e, "old"), rec(V(6, "n")))
	CheckRecord(t, mustGet(t, e, "dup"), rec(V(3, "n")))
	CheckRecord(t, mustGet(t, e, "gone"), storage.NewTombstone(V(6, "n")))
	wantCount(t, e, 3)

	// Nothing newer: all false, nothing changes.
	got, err = e.ApplyBatch(items[:3])
	if err != nil || !slices.Equal(got, []bool{false, false, false}) {
		t.Fatalf("repeat ApplyBatch = %v, %v", got, err)
	}
	wantCount(t, e, 3)
}

func testCount(t *testing.T, e storage.Engine) {
	steps := []struct {
		name string
		do   func() (bool, error)
		want int64
	}{
		{"new", func() (bool, error) { return e.Apply("a", rec(V(1, "n"))) }, 1},
		{"replace", func() (bool, error) { return e.Apply("a", rec(V(2, "n"))) }, 1},
		{"rejected", func() (bool, error) { return e.Apply("a", rec(V(1, "n"))) }, 1},
		{"second", func() (bool, error) { return e.Apply("b", rec(V(1, "n"))) }, 2},
		{"stale", func() (bool, error) { return e.MarkStale("a", V(2, "n"), time.Unix(1, 0)) }, 2},
		{"unstale", func() (bool, error) { return e.Apply("a", rec(V(2, "n"))) }, 2},
		{"delete", func() (bool, error) { return e.Apply("a", storage.NewTombstone(V(3, "n"))) }, 1},
		{"delete again", func() (bool, error) { return e.Apply("a", storage.NewTombstone(V(4, "n"))) }, 1},
		{"recreate", func() (bool, error) { return e.Apply("a", rec(V(5, "n"))) }, 2},
		{"remove", func() (bool, error) { return e.Remove("a", V(5, "n")) }, 1},
		{"tombstone new id", func() (bool, error) { return e.Apply("c", storage.NewTombstone(V(1, "n"))) }, 1},
		{"purge tombstone", func() (bool, error) { return e.Remove("c", V(1, "n")) }, 1},
		{"batch", func() (bool, error) {
			_, err := e.ApplyBatch([]storage.Item{
				{ID: "b", Record: storage.NewTombstone(V(2, "n"))},
				{ID: "d", Record: rec(V(1, "n"))},
				{ID: "e", Record: rec(V(1, "n"))},
				{ID: "e", Record: storage.NewTombstone(V(2, "n"))},
			})
			return true, err
		}, 1},
	}
	for _, s := range steps {
		ok, err := s.do()
		if err != nil {
			t.Fatalf("%s: %v", s.name, err)
		}
		if !ok && s.name != "rejected" {
			t.Fatalf("%s: not applied", s.name)
		}
		if got := e.Count(); got != s.want {
			t.Fatalf("after %s: Count() = %d, want %d", s.name, got, s.want)
		}
	}
}

func testConcurrentSameID(t *testing.T, e storage.Engine) {
	const writers, perWriter = 32, 4
	var wg sync.WaitGroup
	stop := make(chan struct{})
	// Readers check that every Get pairs a version with its own payload:
	// a torn read of metadata and payload shows up here.
	var readers sync.WaitGroup
	for range 4 {
		readers.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				r, err := e.Get("hot")
				if errors.Is(err, storage.ErrNotFound) {
					continue
				}
				if err != nil {
					t.Errorf("Get during writes: %v", err)
					return
				}
				if !bytes.Equal(r.Data, blockFor(r.Version)) {
					t.Errorf("Get returned the payload of another version than %v", r.Version)
					return
				}
			}
		})
	}
	for w := range writers {
		wg.Go(func() {
			for k := range perWriter {
				// Distinct versions; some share a timestamp and differ by node.
				v := V(uint64(1+(w+k*writers)/2), fmt.Sprintf("n%02d", w))
				if _, err := e.Apply("hot", rec(v)); err != nil {
					t.Errorf("Apply %v: %v", v, err)
				}
			}
		})
	}
	wg.Wait()
	close(stop)
	readers.Wait()

	var maxV hlc.Version
	for w := range writers {
		for k := range perWriter {
			if v := V(uint64(1+(w+k*writers)/2), fmt.Sprintf("n%02d", w)); v.Newer(maxV) {
				maxV = v
			}
		}
	}
	CheckRecord(t, mustGet(t, e, "hot"), rec(maxV))
	wantCount(t, e, 1)
}

func testConcurrentDistinctIDs(t *testing.T, e storage.Engine) {
	const writers, perWriter = 32, 8
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for k := range perWriter {
				id := fmt.Sprintf("w%02d-%d", w, k)
				if ok, err := e.Apply(id, rec(V(uint64(k+1), id))); !ok || err != nil {
					t.Errorf("Apply %s = %v, %v", id, ok, err)
				}
			}
		})
	}
	wg.Wait()
	wantCount(t, e, writers*perWriter)
	for w := range writers {
		for k := range perWriter {
			id := fmt.Sprintf("w%02d-%d", w, k)
			CheckRecord(t, mustGet(t, e, id), rec(V(uint64(k+1), id)))
		}
	}
}

func testClose(t *testing.T, e storage.Engine) {
	mustApply(t, e, "a", rec(V(1, "n")), true)
	if err := e.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	calls := map[string]func() error{
		"Get":        func() error { _, err := e.Get("a"); return err },
		"GetMeta":    func() error { _, err := e.GetMeta("a"); return err },
		"Apply":      func() error { _, err := e.Apply("b", rec(V(1, "n"))); return err },
		"ApplyBatch": func() error { _, err := e.ApplyBatch([]storage.Item{{ID: "b", Record: rec(V(1, "n"))}}); return err },
		"MarkStale":  func() error { _, err := e.MarkStale("a", V(1, "n"), time.Now()); return err },
		"Remove":     func() error { _, err := e.Remove("a", V(1, "n")); return err },
		"Scan":       func() error { return e.Scan("", func(string, storage.Meta) bool { return true }) },
		"Close":      e.Close,
	}
	for name, call := range calls {
		if err := call(); !errors.Is(err, storage.ErrClosed) {
			t.Errorf("%s after Close: err = %v, want ErrClosed", name, err)
		}
	}
}

func testCloseDuringWrites(t *testing.T, e storage.Engine) {
	var wg sync.WaitGroup
	started := make(chan struct{}, 8)
	for w := range 8 {
		wg.Go(func() {
			for k := 0; ; k++ {
				_, err := e.Apply(fmt.Sprintf("w%d-%d", w, k), rec(V(uint64(k+1), "n")))
				if k == 0 {
					started <- struct{}{}
				}
				if errors.Is(err, storage.ErrClosed) {
					return
				}
				if err != nil {
					t.Errorf("Apply during Close: %v", err)
					return
				}
			}
		})
	}
	for range 8 {
		<-started
	}
	if err := e.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	wg.Wait()
}
