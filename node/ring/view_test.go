package ring

import (
	"math/rand/v2"
	"slices"
	"testing"
)

// TestOwnershipChanges checks the arcs against the definition at every
// block position and every token (arc ends) for a sequence of views a
// node goes through: first ring, a join's migration, the swap, a leave.
func TestOwnershipChanges(t *testing.T) {
	const rf = 3
	three := mustNew(t, nodes(3, DefaultVNodes))
	four := mustNew(t, nodes(4, DefaultVNodes))
	five := mustNew(t, nodes(5, DefaultVNodes))
	withoutTwo := mustNew(t, slices.Delete(nodes(5, DefaultVNodes), 1, 2))
	views := []View{
		{RF: rf},
		{Current: three, RF: rf},
		{Current: three, Target: four, RF: rf},
		{Current: four, RF: rf},
		{Current: four, Target: five, RF: rf},
		{Current: five, RF: rf},
		{Current: five, Target: withoutTwo, RF: rf},
		{Current: withoutTwo, RF: rf},
	}
	rng := rand.New(rand.NewPCG(1, 2))
	probes := make([]uint64, 20000)
	for i := range probes {
		probes[i] = rng.Uint64()
	}
	for _, r := range []*Ring{three, four, five, withoutTwo} {
		for _, tok := range r.tokens {
			probes = append(probes, tok, tok+1, tok-1)
		}
	}
	for i := 1; i < len(views); i++ {
		for _, self := range []string{"node-1", "node-2", "node-4", "node-5"} {
			a, b := views[i-1], views[i]
			arcs := OwnershipChanges(a, b, self)
			changed := 0
			for _, p := range probes {
				in := slices.ContainsFunc(arcs, func(r Range) bool { return r.Contains(p) })
				if want := a.owns(self, p) != b.owns(self, p); in != want {
					t.Fatalf("view %d→%d, %s, position %d: in an arc %v, ownership changed %v", i-1, i, self, p, in, want)
				}
				if in {
					changed++
				}
			}
			// Disjoint: no probe in two arcs.
			for _, p := range probes {
				if n := len(slices.DeleteFunc(slices.Clone(arcs), func(r Range) bool { return !r.Contains(p) })); n > 1 {
					t.Fatalf("view %d→%d, %s: position %d in %d arcs", i-1, i, self, p, n)
				}
			}
			if testing.Verbose() {
				t.Logf("view %d→%d %s: %d arcs, %.1f%% of positions", i-1, i, self, len(arcs), 100*float64(changed)/float64(len(probes)))
			}
		}
	}
	// Unchanged views: nothing to do; from no ring to one: all that self owns.
	if arcs := OwnershipChanges(views[3], views[3], "node-1"); len(arcs) != 0 {
		t.Errorf("same view: %v", arcs)
	}
	one := mustNew(t, nodes(1, 1))
	if arcs := OwnershipChanges(View{RF: rf}, View{Current: one, RF: rf}, "node-1"); len(arcs) != 1 || arcs[0].Start != arcs[0].End {
		t.Errorf("single-token ring: %v, want the whole ring", arcs)
	}
	if arcs := OwnershipChanges(View{RF: rf}, View{RF: rf}, "node-1"); arcs != nil {
		t.Errorf("no rings: %v", arcs)
	}
}

// TestSharedArcs checks the arcs against IsOwner at random positions and
// at every token, for pairs of a 5-node ring and for a ring smaller than
// RF (every pair shares everything).
func TestSharedArcs(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for _, tc := range []struct {
		n, rf int
	}{{5, 3}, {4, 1}, {2, 3}, {8, 2}} {
		r := mustNew(t, nodes(tc.n, DefaultVNodes))
		probes := slices.Clone(r.tokens)
		for range 5000 {
			probes = append(probes, rng.Uint64())
		}
		for _, a := range r.members {
			for _, b := range r.members {
				if a.Name == b.Name {
					continue
				}
				arcs := SharedArcs(r, tc.rf, a.Name, b.Name)
				for _, p := range probes {
					owners := r.ownerNamesAt(p, tc.rf)
					want := slices.Contains(owners, a.Name) && slices.Contains(owners, b.Name)
					if got := slices.ContainsFunc(arcs, func(x Range) bool { return x.Contains(p) }); got != want {
						t.Fatalf("n=%d rf=%d %s/%s position %d: in arcs %v, shared %v", tc.n, tc.rf, a.Name, b.Name, p, got, want)
					}
				}
			}
		}
	}
	if SharedArcs(nil, 3, "a", "b") != nil {
		t.Error("nil ring shares arcs")
	}
}
