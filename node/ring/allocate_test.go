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

// Bounds of the replica shares (share/mean) that allocation keeps.
const maxSpread, minSpread = 1.07, 0.75

// maxSpreadAfterLeaves bounds max/mean once nodes left (their tokens
// dropped instead: up to 1.25 in the same sequence).
const maxSpreadAfterLeaves = 1.10

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
		r = mustNew(t, ms)
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
		var joined, left string
		if r != nil && r.Len() > 3 && rng.IntN(3) == 0 {
			all := r.Members()
			left = all[rng.IntN(len(all))].Name
			var err error
			if ms, err = Release(r, []string{left}, 3); err != nil {
				t.Fatal(err)
			}
		} else {
			next++
			joined = fmt.Sprintf("n%02d", next)
			var err error
			if ms, err = Allocate(r, []Member{{Name: joined, VNodes: 8 + rng.IntN(20)}}, 3); err != nil {
				t.Fatal(err)
			}
		}
		nr := mustNew(t, ms)
		if r != nil {
			for _, m := range r.Members() {
				nm, ok := nr.Member(m.Name)
				if !ok {
					continue
				}
				old, now := sortedTokens(r, m.Name), sortedTokens(nr, m.Name)
				// A join changes nobody's tokens; a leave only adds the
				// leaver's to the others'.
				if joined != "" && !slices.Equal(old, now) || left != "" && !subset(old, now) {
					t.Fatalf("step %d: %s's tokens changed: %d -> %d (%v)", step, m.Name, len(old), len(nm.Tokens), nm.Tokens)
				}
			}
			if left != "" {
				// A freed token can displace an owner besides the leaver
				// where the leaver held several tokens in a row.
				moved, held := movedFraction(r, nr, 3), r.Shares(3)[left]*3
				if moved > held*1.1 {
					t.Fatalf("step %d: %.4f of the key space moved for %.4f held by %s", step, moved, held, left)
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

func subset(a, b []uint64) bool {
	for _, x := range a {
		if !slices.Contains(b, x) {
			return false
		}
	}
	return true
}

// Nodes leaving one by one hand their tokens to the others: the shares
// stay as even as after joins.
func TestReleaseBalance(t *testing.T) {
	var r *Ring
	for n := 1; n <= 24; n++ {
		ms, err := Allocate(r, []Member{{Name: fmt.Sprintf("node-%02d", n), VNodes: DefaultVNodes}}, 3)
		if err != nil {
			t.Fatal(err)
		}
		r = mustNew(t, ms)
	}
	worst := 0.0
	for _, gone := range []string{"node-05", "node-11", "node-17", "node-20", "node-02", "node-23"} {
		ms, err := Release(r, []string{gone}, 3)
		if err != nil {
			t.Fatal(err)
		}
		r = mustNew(t, ms)
		hi, lo := spread(r, 3)
		worst = max(worst, hi)
		// Looser than after joins: a leaver's tokens keep their places.
		if hi > maxSpreadAfterLeaves || lo < minSpread {
			t.Errorf("without %s (%d nodes): max/mean %.3f, min/mean %.3f; want within %.2f and %.2f", gone, r.Len(), hi, lo, maxSpreadAfterLeaves, minSpread)
		}
	}
	t.Logf("24 -> 18 nodes by leaves: max/mean <= %.3f", worst)
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
