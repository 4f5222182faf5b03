package migration

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/goblocks/goblocks/node/ring"
)

// handoversByOwners is the definition a send plan must match: this node
// sends id to each new owner that was not an old owner, if it was an old
// owner itself.
func handoversByOwners(old, target *ring.Ring, rf int, self, id string) []string {
	if !old.IsOwner(self, id, rf) {
		return nil
	}
	var out []string
	for _, m := range target.Owners(id, rf) {
		if !old.IsOwner(m.Name, id, rf) {
			out = append(out, m.Name)
		}
	}
	return out
}

func testRing(t *testing.T, names []string) *ring.Ring {
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

// Over random joins and leaves, the plan built from ring.Diff sends
// exactly what the per-block definition sends, to the same nodes.
func TestSendPlanMatchesOwnership(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for round := range 60 {
		n := 1 + rng.IntN(8)
		var before []string
		for i := range n {
			before = append(before, fmt.Sprintf("node-%d", i))
		}
		after := slices.Clone(before)
		switch rng.IntN(3) {
		case 0: // join
			after = append(after, fmt.Sprintf("node-%d", n+rng.IntN(3)))
		case 1: // leave
			if len(after) > 1 {
				k := rng.IntN(len(after))
				after = append(after[:k], after[k+1:]...)
			}
		default: // replace one
			k := rng.IntN(len(after))
			after[k] = fmt.Sprintf("node-%d", 100+round)
		}
		old, target := testRing(t, before), testRing(t, slices.Compact(after))
		rf := 1 + rng.IntN(3)
		for _, self := range before {
			plan := newSendPlan(old, target, rf, self)
			for k := range 400 {
				id := fmt.Sprintf("blk-%d-%d", round, k)
				want := handoversByOwners(old, target, rf, self, id)
				var got []string
				for _, m := range plan.destinations(id) {
					got = append(got, m.Name)
					if m.Addr != m.Name+":3000" {
						t.Fatalf("destination %s has address %q", m.Name, m.Addr)
					}
				}
				if !slices.Equal(got, want) {
					t.Fatalf("round %d (%v -> %v, rf %d), %s sends %s to %v, want %v", round, before, after, rf, self, id, got, want)
				}
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
		plan := newSendPlan(tc.old, tc.target, 3, "a")
		for k := range 100 {
			if d := plan.destinations(fmt.Sprint("x", k)); d != nil {
				t.Fatalf("%s: x%d goes to %v", tc.name, k, d)
			}
		}
	}
}
