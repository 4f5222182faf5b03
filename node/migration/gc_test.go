package migration

import (
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

	st, next, err := reconcile(eng, v, "a", now, grace, 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	want := GCStats{Scanned: 4, MarkedStale: 1, Reowned: 1, Collected: 1, Stale: 2}
	if st != want {
		t.Errorf("stats %+v, want %+v", st, want)
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
	_, next, err = reconcile(eng, ring.View{Current: testRing(t, []string{"a"}), RF: 1}, "a", now, grace, 24*time.Hour)
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
		st, _, err := reconcile(eng, v, "a", time.Now(), time.Minute, 24*time.Hour)
		b.StopTimer()
		if err != nil || st.MarkedStale != n {
			b.Fatalf("marked %d of %d stale: %v", st.MarkedStale, n, err)
		}
		eng.Close()
	}
	b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N*n), "µs/record")
}
