package antientropy

import (
	"cmp"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/goblocks/goblocks/node/hlc"
	"github.com/goblocks/goblocks/node/ring"
	"github.com/goblocks/goblocks/node/storage"
)

func v(ts uint64, node string) hlc.Version {
	return hlc.Version{Timestamp: hlc.Timestamp(ts), Node: node}
}

func TestDiff(t *testing.T) {
	for _, tc := range []struct {
		name          string
		local, remote []Entry
		pull, push    []string
	}{
		{name: "both empty"},
		{name: "equal", local: []Entry{{ID: "a", Version: v(1, "n0")}, {ID: "b", Version: v(2, "n1")}}, remote: []Entry{{ID: "a", Version: v(1, "n0")}, {ID: "b", Version: v(2, "n1")}}},
		{name: "only remote", remote: []Entry{{ID: "a", Version: v(1, "n0")}}, pull: []string{"a"}},
		{name: "only local", local: []Entry{{ID: "a", Version: v(1, "n0")}}, push: []string{"a"}},
		{name: "remote newer", local: []Entry{{ID: "a", Version: v(1, "n0")}}, remote: []Entry{{ID: "a", Version: v(2, "n0")}}, pull: []string{"a"}},
		{name: "local newer", local: []Entry{{ID: "a", Version: v(3, "n0")}}, remote: []Entry{{ID: "a", Version: v(2, "n0")}}, push: []string{"a"}},
		{name: "tie broken by node", local: []Entry{{ID: "a", Version: v(2, "n1")}}, remote: []Entry{{ID: "a", Version: v(2, "n0")}}, push: []string{"a"}},
		{
			name:   "mixed and unsorted",
			local:  []Entry{{ID: "d", Version: v(5, "n0")}, {ID: "a", Version: v(1, "n0")}, {ID: "c", Version: v(9, "n0")}},
			remote: []Entry{{ID: "c", Version: v(7, "n0")}, {ID: "b", Version: v(1, "n0")}, {ID: "a", Version: v(4, "n0")}, {ID: "e", Version: v(1, "n0")}},
			pull:   []string{"a", "b", "e"}, push: []string{"c", "d"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pull, push := Diff(tc.local, tc.remote)
			if !slices.Equal(pull, tc.pull) || !slices.Equal(push, tc.push) {
				t.Fatalf("Diff = pull %q push %q, want pull %q push %q", pull, push, tc.pull, tc.push)
			}
		})
	}
}

func TestMismatched(t *testing.T) {
	for _, tc := range []struct {
		name          string
		local, remote []uint64
		want          []int
	}{
		{name: "equal", local: []uint64{1, 2, 3}, remote: []uint64{1, 2, 3}},
		{name: "some differ", local: []uint64{1, 2, 3, 4}, remote: []uint64{1, 5, 3, 6}, want: []int{1, 3}},
		{name: "shorter remote", local: []uint64{1, 2, 3}, remote: []uint64{1}, want: []int{1, 2}},
		{name: "empty remote", local: []uint64{0, 0}, want: []int{0, 1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := Mismatched(tc.local, tc.remote); !slices.Equal(got, tc.want) {
				t.Fatalf("Mismatched = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestValidBuckets(t *testing.T) {
	many := make([]int, MaxBucketsPerRequest+1)
	for _, tc := range []struct {
		buckets []int
		ok      bool
	}{
		{nil, false},
		{[]int{0}, true},
		{[]int{Buckets - 1, 3}, true},
		{[]int{-1}, false},
		{[]int{Buckets}, false},
		{many, false},
		{many[:MaxBucketsPerRequest], true},
	} {
		err := ValidBuckets(tc.buckets)
		if (err == nil) != tc.ok || (err != nil && !errors.Is(err, ErrBadBuckets)) {
			t.Errorf("ValidBuckets(%v) = %v, want ok=%v", tc.buckets, err, tc.ok)
		}
	}
}

// records is an in-memory scan source: ScanRange over a map.
type records map[string]storage.Meta

func (rs records) scan(r ring.Range, fn func(string, storage.Meta) bool) error {
	ids := make([]string, 0, len(rs))
	for id := range rs {
		if r.Contains(ring.Position(id)) {
			ids = append(ids, id)
		}
	}
	// Clockwise from the arc's start, as an engine returns them.
	slices.SortFunc(ids, func(a, b string) int {
		return cmp.Compare(ring.Position(a)-r.Start, ring.Position(b)-r.Start)
	})
	for _, id := range ids {
		if !fn(id, rs[id]) {
			break
		}
	}
	return nil
}

func testRing(t *testing.T, names ...string) *ring.Ring {
	t.Helper()
	var ms []ring.Member
	for _, n := range names {
		ms = append(ms, ring.Member{Name: n, Addr: n + ":1", VNodes: 20})
	}
	r, err := ring.New(ms)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestDigest(t *testing.T) {
	r := testRing(t, "n0", "n1", "n2", "n3")
	s := Scope{Ring: r, RF: 2, Self: "n0", Peer: "n1"}
	// Ids both n0 and n1 own, and ids only one of them owns.
	var shared, other []string
	for i := 0; len(shared) < 20 || len(other) < 5; i++ {
		id := fmt.Sprintf("b%d", i)
		if r.IsOwner("n0", id, 2) && r.IsOwner("n1", id, 2) {
			shared = append(shared, id)
		} else {
			other = append(other, id)
		}
	}
	base := records{}
	for i, id := range shared {
		base[id] = storage.Meta{Version: v(uint64(100+i), "n2"), Tombstone: i%5 == 0}
	}
	want, err := Digest(base.scan, s)
	if err != nil {
		t.Fatal(err)
	}
	if len(want) != Buckets || slices.Equal(want, make([]uint64, Buckets)) {
		t.Fatalf("digest of %d records is empty", len(shared))
	}
	mutate := func(f func(records)) []int {
		rs := records{}
		for id, m := range base {
			rs[id] = m
		}
		f(rs)
		got, err := Digest(rs.scan, s)
		if err != nil {
			t.Fatal(err)
		}
		return Mismatched(want, got)
	}
	for _, tc := range []struct {
		name string
		f    func(records)
		want []int
	}{
		{name: "unchanged", f: func(records) {}},
		{name: "records outside the pair's share are ignored", f: func(rs records) {
			for _, id := range other {
				rs[id] = storage.Meta{Version: v(1, "n0")}
			}
		}},
		{name: "stale copies are ignored", f: func(rs records) {
			rs[shared[1]] = storage.Meta{Version: v(999, "n0"), StaleSince: time.Unix(1, 0)}
		}, want: []int{BucketOf(shared[1])}}, // the owned version is gone from it
		{name: "a newer version", f: func(rs records) {
			rs[shared[2]] = storage.Meta{Version: v(999, "n0")}
		}, want: []int{BucketOf(shared[2])}},
		{name: "a missing record", f: func(rs records) { delete(rs, shared[3]) }, want: []int{BucketOf(shared[3])}},
		{name: "a missing tombstone", f: func(rs records) { delete(rs, shared[0]) }, want: []int{BucketOf(shared[0])}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := mutate(tc.f); !slices.Equal(got, tc.want) {
				t.Fatalf("mismatched buckets %v, want %v", got, tc.want)
			}
		})
	}

	// Collect lists exactly the shared, owned records of the buckets.
	b := BucketOf(shared[4])
	got, err := Collect(base.scan, s, []int{b})
	if err != nil {
		t.Fatal(err)
	}
	var wantIDs []string
	for _, id := range shared {
		if BucketOf(id) == b {
			wantIDs = append(wantIDs, id)
		}
	}
	slices.Sort(wantIDs)
	var gotIDs []string
	for _, e := range got {
		gotIDs = append(gotIDs, e.ID)
		if e.Version != base[e.ID].Version {
			t.Errorf("%s listed at %v, stored %v", e.ID, e.Version, base[e.ID].Version)
		}
	}
	slices.Sort(gotIDs)
	if !slices.Equal(gotIDs, wantIDs) {
		t.Fatalf("Collect(bucket %d) = %q, want %q", b, gotIDs, wantIDs)
	}
}

func TestRingID(t *testing.T) {
	a := RingID(testRing(t, "n0", "n1", "n2"), 3)
	for _, tc := range []struct {
		name string
		id   string
		same bool
	}{
		{"same members in another order", RingID(testRing(t, "n2", "n0", "n1"), 3), true},
		{"another rf", RingID(testRing(t, "n0", "n1", "n2"), 2), false},
		{"another member", RingID(testRing(t, "n0", "n1", "n3"), 3), false},
		{"one more member", RingID(testRing(t, "n0", "n1", "n2", "n3"), 3), false},
	} {
		if (tc.id == a) != tc.same {
			t.Errorf("%s: RingID equal = %v, want %v", tc.name, tc.id == a, tc.same)
		}
	}
}

// TestBucketArcs: bucket b is exactly the arc bucketArc(b), so listing a
// bucket can read only its arc; the arcs tile the ring.
func TestBucketArcs(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	probes := []uint64{0, 1, math.MaxUint64, math.MaxUint64 - 1}
	for b := range Buckets {
		lo := uint64(b) * bucketWidth
		probes = append(probes, lo, lo-1, lo+1)
	}
	for range 10000 {
		probes = append(probes, rng.Uint64())
	}
	for _, p := range probes {
		bucket := int(p / bucketWidth)
		if bucket < 0 || bucket >= Buckets {
			t.Fatalf("position %d in bucket %d", p, bucket)
		}
		for _, b := range []int{bucket - 1, bucket, bucket + 1} {
			if b < 0 || b >= Buckets {
				continue
			}
			if got := bucketArc(b).Contains(p); got != (b == bucket) {
				t.Fatalf("position %d (bucket %d): bucketArc(%d).Contains = %v", p, bucket, b, got)
			}
		}
	}
	if bucketArc(Buckets-1).End != math.MaxUint64 || bucketArc(0).Start != math.MaxUint64 {
		t.Errorf("the arcs do not cover the ring's ends: first %v, last %v", bucketArc(0), bucketArc(Buckets-1))
	}
}
