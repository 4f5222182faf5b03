package migration

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/goblocks/goblocks/node/hlc"
	"github.com/goblocks/goblocks/node/ring"
	"github.com/goblocks/goblocks/node/storage"
	"github.com/goblocks/goblocks/node/storage/memory"
	"github.com/goblocks/goblocks/node/storage/pebble"
)

// reconcile turns copies this node no longer owns stale, collects them
// after the grace, and says when the first stale copy it left expires.
func TestReconcile(t *testing.T) {
	const grace = 10 * time.Second
	now := time.Now()
	r := testRing(t, []string{"a", "b", "c", "d"})
	v := ring.View{Current: r, RF: 1}
	// One id owned by a, and three it does not own.
	var mine string
	var others []string
	for k := 0; mine == "" || len(others) < 3; k++ {
		id := fmt.Sprint("blk-", k)
		if r.IsOwner("a", id, 1) {
			if mine == "" {
				mine = id
			}
		} else if len(others) < 3 {
			others = append(others, id)
		}
	}
	fresh, young, old := others[0], others[1], others[2]
	eng := memory.New()
	ver := hlc.Version{Timestamp: hlc.Timestamp(uint64(now.Add(-time.Minute).UnixMicro()) << 12), Node: "a"}
	for _, id := range []string{mine, fresh, young, old} {
		if _, err := eng.Apply(id, storage.NewRecord([]byte(id), ver)); err != nil {
			t.Fatal(err)
		}
	}
	// mine was stale (a previous ring moved it away and back): reowned.
	mustMark(t, eng, mine, ver, now.Add(-time.Second))
	mustMark(t, eng, young, ver, now.Add(-3*time.Second)) // expires in 7s
	mustMark(t, eng, old, ver, now.Add(-grace-time.Second))

	var told int64
	st, next, staleBefore, err := reconcile(t.Context(), eng, v, "a", now, grace, 24*time.Hour, nil, nil, func(d int64) { told += d })
	if err != nil {
		t.Fatal(err)
	}
	want := GCStats{Scanned: 4, MarkedStale: 1, Reowned: 1, Collected: 1, Stale: 2}
	if st != want {
		t.Errorf("stats %+v, want %+v", st, want)
	}
	// What the pass told as it went adds up to the change of the count.
	if staleBefore != 3 || told != st.Stale-staleBefore {
		t.Errorf("stale before %d, after %d, told %+d as it went", staleBefore, st.Stale, told)
	}
	if wantNext := now.Add(-3 * time.Second).Add(grace); !next.Equal(wantNext) {
		t.Errorf("next expiry %v, want %v (the young stale copy's)", next.Sub(now), wantNext.Sub(now))
	}
	for id, state := range map[string]string{mine: "owned", fresh: "stale", young: "stale", old: "gone"} {
		m, err := eng.GetMeta(id)
		got := "owned"
		switch {
		case err != nil:
			got = "gone"
		case !m.StaleSince.IsZero():
			got = "stale"
		}
		if got != state {
			t.Errorf("%s is %s, want %s", id, got, state)
		}
	}

	// Nothing stale left: no expiry to wait for.
	_, next, _, err = reconcile(t.Context(), eng, ring.View{Current: testRing(t, []string{"a"}), RF: 1}, "a", now, grace, 24*time.Hour, nil, nil, nil)
	if err != nil || !next.IsZero() {
		t.Fatalf("after every copy is owned again: next %v, err %v; want zero", next, err)
	}
}

func mustMark(t *testing.T, eng storage.Engine, id string, v hlc.Version, since time.Time) {
	t.Helper()
	if ok, err := eng.MarkStale(id, v, since); !ok || err != nil {
		t.Fatalf("MarkStale(%s) = %v, %v", id, ok, err)
	}
}

// BenchmarkReconcileMarksStale: the pass at a ring swap marks every copy
// that moved away stale (here all of them, on a Pebble store).
func BenchmarkReconcileMarksStale(b *testing.B) {
	const n = 5000
	for range b.N {
		b.StopTimer()
		eng, err := pebble.Open(b.TempDir(), pebble.Options{})
		if err != nil {
			b.Fatal(err)
		}
		ver := hlc.Version{Timestamp: hlc.Timestamp(uint64(time.Now().UnixMicro()) << 12), Node: "a"}
		items := make([]storage.Item, 0, 256)
		for k := range n {
			items = append(items, storage.Item{ID: fmt.Sprint("blk-", k), Record: storage.NewRecord(make([]byte, 4096), ver)})
			if len(items) == cap(items) || k == n-1 {
				if _, err := eng.ApplyBatch(items); err != nil {
					b.Fatal(err)
				}
				items = items[:0]
			}
		}
		v := ring.View{Current: testRingTB(b, []string{"b", "c", "d"}), RF: 3}
		b.StartTimer()
		st, _, _, err := reconcile(b.Context(), eng, v, "a", time.Now(), time.Minute, 24*time.Hour, nil, nil, nil)
		b.StopTimer()
		if err != nil || st.MarkedStale != n {
			b.Fatalf("marked %d of %d stale: %v", st.MarkedStale, n, err)
		}
		eng.Close()
	}
	b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N*n), "µs/record")
}

// TestReconcileArcsOnly: after a join, a pass over the arcs whose
// ownership changed leaves the store exactly as a pass over everything
// would, and reads only the records in those arcs (about the share the
// joiner took), on both engines.
func TestReconcileArcsOnly(t *testing.T) {
	const n, rf = 4000, 3
	before := ring.View{Current: testRing(t, []string{"a", "b", "c", "d"}), RF: rf}
	after := ring.View{Current: testRing(t, []string{"a", "b", "c", "d", "e"}), RF: rf}
	arcs := ring.OwnershipChanges(before, after, "a")
	ver := hlc.Version{Timestamp: hlc.Timestamp(uint64(time.Now().UnixMicro()) << 12), Node: "a"}
	fill := func(eng storage.Engine) {
		var items []storage.Item
		for k := range n {
			if id := fmt.Sprint("blk-", k); before.Current.IsOwner("a", id, rf) {
				items = append(items, storage.Item{ID: id, Record: storage.NewRecord([]byte(id), ver)})
			}
		}
		if _, err := eng.ApplyBatch(items); err != nil {
			t.Fatal(err)
		}
	}
	state := func(eng storage.Engine) map[string]bool {
		out := map[string]bool{}
		if err := eng.Scan("", func(id string, m storage.Meta) bool { out[id] = m.StaleSince.IsZero(); return true }); err != nil {
			t.Fatal(err)
		}
		return out
	}
	openPebble := func() storage.Engine {
		e, err := pebble.Open(t.TempDir(), pebble.Options{ByPosition: true})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { e.Close() })
		return e
	}
	for name, open := range map[string]func() storage.Engine{"memory": func() storage.Engine { return memory.New() }, "pebble": openPebble} {
		t.Run(name, func(t *testing.T) {
			full, partial := open(), open()
			fill(full)
			fill(partial)
			now := time.Now()
			stFull, _, _, err := reconcile(t.Context(), full, after, "a", now, time.Minute, 24*time.Hour, nil, nil, nil)
			if err != nil {
				t.Fatal(err)
			}
			stArcs, _, _, err := reconcile(t.Context(), partial, after, "a", now, time.Minute, 24*time.Hour, arcs, nil, nil)
			if err != nil {
				t.Fatal(err)
			}
			if got, want := state(partial), state(full); len(got) != len(want) || fmt.Sprint(got) != fmt.Sprint(want) {
				t.Fatalf("arcs-only pass left another state than a full pass")
			}
			if stArcs.MarkedStale != stFull.MarkedStale || stArcs.MarkedStale == 0 {
				t.Errorf("marked %d stale, full pass %d", stArcs.MarkedStale, stFull.MarkedStale)
			}
			// Only the lost arcs are read: the joiner's share of a's data.
			if stArcs.Scanned != stArcs.MarkedStale {
				t.Errorf("read %d records for %d that changed (store: %d)", stArcs.Scanned, stArcs.MarkedStale, stFull.Scanned)
			}
			t.Logf("full pass read %d records, arcs pass %d (%d marked stale)", stFull.Scanned, stArcs.Scanned, stArcs.MarkedStale)
		})
	}
}

// TestGCScope walks the pass sequence a node goes through around two
// swaps and checks what each pass reads.
func TestGCScope(t *testing.T) {
	const rf = 3
	v3 := ring.View{Current: testRing(t, []string{"a", "b", "c"}), RF: rf}
	v34 := ring.View{Current: v3.Current, Target: testRing(t, []string{"a", "b", "c", "d"}), RF: rf}
	v4 := ring.View{Current: v34.Target, RF: rf}
	v5 := ring.View{Current: testRing(t, []string{"a", "b", "c", "d", "e"}), RF: rf}
	lost4 := ring.OwnershipChanges(v34, v4, "a")
	lost5 := ring.OwnershipChanges(v4, v5, "a")
	if len(lost4) == 0 || len(lost5) == 0 {
		t.Fatal("the joins move nothing away from a")
	}
	all := []ring.Range(nil)
	none := []ring.Range{}
	fail := errors.New("disk")
	g := gcScope{self: "a"}
	for i, step := range []struct {
		kind  gcPass
		view  ring.View
		want  []ring.Range
		stale int64
		err   error
	}{
		{swapPass, v3, all, 0, nil},                                 // first pass: everything
		{swapPass, v34, none, 0, nil},                               // migration starts: a loses nothing yet (owns in Current or Target)
		{swapPass, v4, lost4, 5, nil},                               // the swap: only the arcs d took
		{expiryPass, v4, lost4, 0, nil},                             // their grace ends: those arcs again, all collected
		{expiryPass, v4, all, 0, nil},                               // nothing pending: everything
		{swapPass, v5, lost5, 3, nil},                               // the next join
		{periodicPass, v5, all, 2, nil},                             // periodic: everything, stale copies left
		{expiryPass, v5, all, 0, nil},                               // stale copies anywhere: everything
		{swapPass, v5, none, 0, nil},                                // no change
		{swapPass, v4, ring.OwnershipChanges(v5, v4, "a"), 0, fail}, // a failed pass
		{swapPass, v4, all, 0, nil},                                 // then everything
	} {
		got := g.arcs(step.kind, step.view)
		if (got == nil) != (step.want == nil) || fmt.Sprint(got) != fmt.Sprint(step.want) {
			t.Fatalf("step %d: reads %v, want %v", i, got, step.want)
		}
		g.done(step.kind, step.view, got, step.stale, step.err)
	}
}

// TestReconcileStopsWithContext: a pass whose context ended stops at once
// and says so (a node that left would otherwise mark its whole store
// stale before it could exit).
func TestReconcileStopsWithContext(t *testing.T) {
	eng := memory.New()
	ver := hlc.Version{Timestamp: hlc.Timestamp(uint64(time.Now().UnixMicro()) << 12), Node: "a"}
	var items []storage.Item
	for k := range 1000 {
		items = append(items, storage.Item{ID: fmt.Sprint("blk-", k), Record: storage.NewRecord([]byte("x"), ver)})
	}
	if _, err := eng.ApplyBatch(items); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	v := ring.View{Current: testRing(t, []string{"b", "c", "d"}), RF: 3} // a owns nothing
	st, _, _, err := reconcile(ctx, eng, v, "a", time.Now(), time.Minute, 24*time.Hour, nil, nil, nil)
	if !errors.Is(err, context.Canceled) || st.Scanned > 1 || st.MarkedStale > 1 {
		t.Fatalf("cancelled pass: %+v, %v", st, err)
	}
}

// TestReconcileStopsWhenTheViewChanges: a pass decides by the view it
// started with; once that view is replaced it commits nothing more (the
// new view may give the copies back) and says so. At a million blocks a
// pass under load took 5 minutes and, before this check, marked 106,000
// copies stale that the migration that had started meanwhile gave the
// node.
func TestReconcileStopsWhenTheViewChanges(t *testing.T) {
	eng := memory.New()
	ver := hlc.Version{Timestamp: hlc.Timestamp(uint64(time.Now().UnixMicro()) << 12), Node: "a"}
	var items []storage.Item
	for k := range 2000 {
		items = append(items, storage.Item{ID: fmt.Sprint("blk-", k), Record: storage.NewRecord([]byte("x"), ver)})
	}
	if _, err := eng.ApplyBatch(items); err != nil {
		t.Fatal(err)
	}
	v := ring.View{Current: testRing(t, []string{"b", "c", "d"}), RF: 3} // a owns nothing
	batches := 0
	still := func() (func(), bool) {
		batches++
		return func() {}, batches <= 2 // the view changes after two batches
	}
	st, _, _, err := reconcile(t.Context(), eng, v, "a", time.Now(), time.Minute, 24*time.Hour, nil, still, nil)
	if !errors.Is(err, errViewChanged) {
		t.Fatalf("pass over a replaced view: %v", err)
	}
	if st.MarkedStale != 2*gcBatch {
		t.Fatalf("marked %d stale, want the %d of the two batches committed before the change", st.MarkedStale, 2*gcBatch)
	}
	stale := 0
	_ = eng.Scan("", func(_ string, m storage.Meta) bool {
		if !m.StaleSince.IsZero() {
			stale++
		}
		return true
	})
	if stale != 2*gcBatch {
		t.Fatalf("%d records stale in the store, want %d", stale, 2*gcBatch)
	}
}
