package migration

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/goblocks/goblocks/node/hlc"
	"github.com/goblocks/goblocks/node/ring"
	"github.com/goblocks/goblocks/node/storage"
	"github.com/goblocks/goblocks/node/storage/memory"
	"github.com/goblocks/goblocks/node/wire"
)

func testRing(t *testing.T, names []string) *ring.Ring { return testRingTB(t, names) }

func testRingTB(t testing.TB, names []string) *ring.Ring {
	t.Helper()
	ms := make([]ring.Member, len(names))
	for i, n := range names {
		ms[i] = ring.Member{Name: n, Addr: n + ":3000", VNodes: 20}
	}
	r, err := ring.New(ms)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// newOwners is what the old owners of id must hand over between two
// rings: the new owners that were not old owners.
func newOwners(old, target *ring.Ring, rf int, id string) []string {
	var out []string
	for _, m := range target.Owners(id, rf) {
		if !old.IsOwner(m.Name, id, rf) {
			out = append(out, m.Name)
		}
	}
	return out
}

// Over random joins, leaves and crashes, the plans of the old owners send
// each block exactly once to each node that gains it: from the first old
// owner taking part in the round, which consults the other live old owners.
func TestSendPlanSendsEachBlockOnce(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for round := range 80 {
		n := 1 + rng.IntN(8)
		var before []string
		for i := range n {
			before = append(before, fmt.Sprintf("node-%d", i))
		}
		after := slices.Clone(before)
		participants := slices.Clone(before)
		switch rng.IntN(4) {
		case 0: // join
			joined := fmt.Sprintf("node-%d", n+rng.IntN(3))
			after = append(after, joined)
			participants = append(participants, joined)
		case 1: // graceful leave: the leaving node still takes part
			if len(after) > 1 {
				k := rng.IntN(len(after))
				after = append(after[:k], after[k+1:]...)
			}
		case 2: // crash: the dead node takes no part
			if len(after) > 1 {
				k := rng.IntN(len(after))
				dead := after[k]
				after = append(after[:k], after[k+1:]...)
				participants = slices.DeleteFunc(participants, func(p string) bool { return p == dead })
			}
		default: // replace one
			k := rng.IntN(len(after))
			after[k] = fmt.Sprintf("node-%d", 100+round)
			participants = append(participants, after[k])
		}
		old, target := testRing(t, before), testRing(t, slices.Compact(after))
		rf := 1 + rng.IntN(3)
		plans := map[string]sendPlan{}
		for _, self := range before {
			plans[self] = newSendPlan(old, target, rf, self, participants)
		}
		for k := range 300 {
			id := fmt.Sprintf("blk-%d-%d", round, k)
			var from []string // old owners of id taking part, in preference order
			for _, m := range old.Owners(id, rf) {
				if slices.Contains(participants, m.Name) {
					from = append(from, m.Name)
				}
			}
			want := newOwners(old, target, rf, id)
			if len(from) == 0 {
				want = nil // every old owner is gone: nobody can send
			}
			var got []string
			for _, self := range before {
				dests := plans[self].destinations(id)
				if dests == nil {
					continue
				}
				if self != from[0] {
					t.Fatalf("round %d: %s sends %s, but %s is its designated sender", round, self, id, from[0])
				}
				for _, m := range dests {
					got = append(got, m.Name)
					if m.Addr != m.Name+":3000" {
						t.Fatalf("destination %s has address %q", m.Name, m.Addr)
					}
				}
				names := func(ms []ring.Member) []string {
					var out []string
					for _, m := range ms {
						out = append(out, m.Name)
					}
					return out
				}
				// Its own copy lost: every other live old owner. Its own
				// copy good: enough others that with it they meet every
				// write quorum of the N old owners (N-W of them).
				if got := names(plans[self].consult(id, false)); !slices.Equal(got, from[1:]) {
					t.Fatalf("round %d: sender of %s without its copy consults %v, want the other live old owners %v", round, id, got, from[1:])
				}
				n := len(old.Owners(id, rf))
				need := min(n-(n/2+1), len(from)-1)
				if got := names(plans[self].consult(id, true)); !slices.Equal(got, from[1:1+need]) {
					t.Fatalf("round %d: sender of %s consults %v, want %v (N=%d)", round, id, got, from[1:1+need], n)
				}
			}
			if !slices.Equal(got, want) {
				t.Fatalf("round %d (%v -> %v, participants %v, rf %d): %s sent to %v, want %v once each", round, before, after, participants, rf, id, got, want)
			}
		}
	}
}

// A first ring (no old owners) and an unchanged ring send nothing.
func TestSendPlanEmpty(t *testing.T) {
	r := testRing(t, []string{"a", "b", "c"})
	for _, tc := range []struct {
		name        string
		old, target *ring.Ring
	}{
		{"first ring", nil, r},
		{"unchanged", r, r},
	} {
		plan := newSendPlan(tc.old, tc.target, 3, "a", []string{"a", "b", "c"})
		for k := range 100 {
			if d := plan.destinations(fmt.Sprint("x", k)); d != nil {
				t.Fatalf("%s: x%d goes to %v", tc.name, k, d)
			}
		}
	}
}

// fakeOwners answers MetaBatch and FetchBatch from per-address engines.
type fakeOwners struct {
	engines map[string]storage.Engine
	fail    map[string]bool
	applied map[string][]storage.Item
}

func (f *fakeOwners) ApplyBatch(_ context.Context, addr string, items []storage.Item) ([]wire.ApplyResult, error) {
	f.applied[addr] = append(f.applied[addr], items...)
	return make([]wire.ApplyResult, len(items)), nil
}

func (f *fakeOwners) MetaBatch(_ context.Context, addr string, ids []string) ([]wire.MetaReply, error) {
	if f.fail[addr] {
		return nil, errors.New("connection refused")
	}
	out := make([]wire.MetaReply, len(ids))
	for i, id := range ids {
		if m, err := f.engines[addr].GetMeta(id); err == nil {
			out[i] = wire.MetaReply{Status: wire.FetchFound, Meta: m}
		} else {
			out[i] = wire.MetaReply{Status: wire.FetchAbsent}
		}
	}
	return out, nil
}

func (f *fakeOwners) FetchBatch(_ context.Context, addr string, ids []string) ([]wire.FetchReply, error) {
	out := make([]wire.FetchReply, len(ids))
	for i, id := range ids {
		if r, err := f.engines[addr].Get(id); err == nil {
			out[i] = wire.FetchReply{Status: wire.FetchFound, Record: r}
		} else {
			out[i] = wire.FetchReply{Status: wire.FetchAbsent}
		}
	}
	return out, nil
}

// The designated sender sends the newest copy among the live old owners:
// a quorum-acknowledged write it missed is fetched from one that has it.
func TestNewestRecords(t *testing.T) {
	v := func(ts uint64) hlc.Version { return hlc.Version{Timestamp: hlc.Timestamp(ts << 12), Node: "n"} }
	rec := func(ts uint64) storage.Record { return storage.NewRecord([]byte(fmt.Sprint("payload ", ts)), v(ts)) }
	self, b, c := memory.New(), memory.New(), memory.New()
	put := func(e storage.Engine, id string, ts uint64) {
		if _, err := e.Apply(id, rec(ts)); err != nil {
			t.Fatal(err)
		}
	}
	put(self, "same", 5)
	put(b, "same", 5)
	put(self, "missed", 1) // b and c took a newer write
	put(b, "missed", 7)
	put(c, "missed", 7)
	put(c, "only-c", 3) // this node never got it
	put(self, "only-self", 4)
	put(b, "older-b", 1)
	put(self, "older-b", 2)
	f := &fakeOwners{engines: map[string]storage.Engine{"b:1": b, "c:1": c}, fail: map[string]bool{}, applied: map[string][]storage.Item{}}
	others := []ring.Member{{Name: "b", Addr: "b:1"}, {Name: "c", Addr: "c:1"}}
	var batch []candidate
	for _, id := range []string{"same", "missed", "only-c", "only-self", "older-b", "nowhere"} {
		r, err := self.Get(id)
		batch = append(batch, candidate{id: id, rec: r, have: err == nil})
	}
	// Every other owner is asked here (a plan asks fewer when this node's
	// copy is good: TestSendPlan).
	consultAll := func(string, bool) []ring.Member { return others }
	items, err := newestRecords(t.Context(), f, batch, consultAll)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]storage.Record{"same": rec(5), "missed": rec(7), "only-c": rec(3), "only-self": rec(4), "older-b": rec(2)}
	if len(items) != len(want) {
		t.Fatalf("%d items, want %d: %+v", len(items), len(want), items)
	}
	for _, it := range items {
		w := want[it.ID]
		if it.Record.Version != w.Version || string(it.Record.Data) != string(w.Data) || it.Record.Checksum != w.Checksum {
			t.Errorf("%s: sent %s %q, want %s %q", it.ID, it.Record.Version, it.Record.Data, w.Version, w.Data)
		}
	}
	// An old owner that does not answer is retried, never skipped.
	f.fail["c:1"] = true
	if _, err := newestRecords(t.Context(), f, batch, consultAll); !errors.Is(err, errPeer) {
		t.Fatalf("with c unreachable: %v, want errPeer", err)
	}
}

// destinations returns the new owners this node must send id to; nil when
// id's owners gain nobody or another old owner sends it.
func (p sendPlan) destinations(id string) []ring.Member {
	if i := p.lookup(id); i >= 0 {
		return p.dests[i]
	}
	return nil
}
