package ring

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
)

// spread returns max/mean and min/mean of the members' replica shares.
func spread(r *Ring, rf int) (hi, lo float64) {
	shares := r.Shares(rf)
	mean := 1 / float64(len(shares))
	lo = 1e9
	for _, s := range shares {
		hi, lo = max(hi, s/mean), min(lo, s/mean)
	}
	return hi, lo
}

func mustRing(t testing.TB, ms []Member) *Ring {
	t.Helper()
	r, err := New(ms)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// Bounds of the replica shares (share/mean) that allocation keeps.
const maxSpread, minSpread = 1.07, 0.75

// Growing a cluster one node at a time to 64 nodes, allocated tokens keep
// every node's replica share near the mean at RF=3.
func TestAllocateBalance(t *testing.T) {
	var r *Ring
	worstHi, worstLo := 0.0, 9.0
	for n := 1; n <= 64; n++ {
		ms, err := Allocate(r, []Member{{Name: fmt.Sprintf("node-%02d", n), VNodes: DefaultVNodes}}, 3)
		if err != nil {
			t.Fatal(err)
		}
		r = mustRing(t, ms)
		if n < 3 {
			continue
		}
		hi, lo := spread(r, 3)
		worstHi, worstLo = max(worstHi, hi), min(worstLo, lo)
		// The goal is 1.05; this allocator reaches 1.062 at worst
		// (random tokens: up to 1.35, TestBalance).
		if hi > maxSpread || lo < minSpread {
			t.Errorf("%d nodes: max/mean %.3f, min/mean %.3f; want within %.2f and %.2f", n, hi, lo, maxSpread, minSpread)
		}
	}
	t.Logf("3-64 nodes, RF=3, 20 vnodes: max/mean <= %.3f, min/mean >= %.3f", worstHi, worstLo)
}

// A join moves only what the joining member gains: every arc whose owners
// change gains the new member and loses at most one old owner; old
// members keep their tokens. Over random join and leave sequences.
func TestAllocateMovesOnlyToTheJoiner(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 11))
	var r *Ring
	next := 0
	for step := range 40 {
		var ms []Member
		var joined string
		if r != nil && r.Len() > 3 && rng.IntN(3) == 0 {
			all := r.Members()
			ms = Without(r, []string{all[rng.IntN(len(all))].Name})
		} else {
			next++
			joined = fmt.Sprintf("n%02d", next)
			var err error
			if ms, err = Allocate(r, []Member{{Name: joined, VNodes: 8 + rng.IntN(20)}}, 3); err != nil {
				t.Fatal(err)
			}
		}
		nr := mustRing(t, ms)
		if r != nil {
			for _, m := range r.Members() {
				nm, ok := nr.Member(m.Name)
				if ok && !slices.Equal(sortedTokens(r, m.Name), nm.Tokens) {
					t.Fatalf("step %d: %s's tokens changed", step, m.Name)
				}
			}
			if joined != "" {
				moved, gained := movedFraction(r, nr, 3), nr.Shares(3)[joined]*3
				if moved > gained*1.0001 {
					t.Fatalf("step %d: %.4f of the key space moved for %.4f gained by %s", step, moved, gained, joined)
				}
			}
		}
		r = nr
	}
}

func sortedTokens(r *Ring, name string) []uint64 {
	var out []uint64
	for _, v := range r.VNodes() {
		if v.Node == name {
			out = append(out, v.Token)
		}
	}
	return out
}

// movedFraction is how much of the key space (counted once per copy) new
// owners receive between two rings.
func movedFraction(old, new *Ring, rf int) float64 {
	var f float64
	for _, mv := range Diff(old, new, rf) {
		f += mv.Range.Fraction() * float64(len(mv.To))
	}
	return f
}
