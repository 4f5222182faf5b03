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

// Bounds of the replica shares (share/mean) that allocation keeps: the
// issue's 1.05 for the busiest member, and a floor for the least loaded
// one. Measured: after joins 1.019 and 0.978; after leaves 1.013 and
// 0.991 (dropping the leavers' tokens instead gives up to 1.25).
const (
	maxSpread, minSpread                       = 1.05, 0.95
	maxSpreadAfterLeaves, minSpreadAfterLeaves = 1.05, 0.95
)

// Growing a cluster one node at a time to 64 nodes, allocated tokens keep
// every node's replica share near the mean at RF=3. At 3, 4, 8, 16, 32 and
// 64 nodes the log has a row of the table in BENCHMARKS.md: the spread
// after the join and what it moved for what the joiner gained, then the
// same after the oldest node leaves that ring.
func TestAllocateBalance(t *testing.T) {
	var r *Ring
	worstHi, worstLo := 0.0, 9.0
	t.Logf("%5s | %8s %8s %10s | %8s %8s %10s", "nodes", "max/mean", "min/mean", "join moved", "max/mean", "min/mean", "leave moved")
	for n := 1; n <= 64; n++ {
		joiner := fmt.Sprintf("node-%02d", n)
		ms, err := Allocate(r, []Member{{Name: joiner, VNodes: DefaultVNodes}}, 3)
		if err != nil {
			t.Fatal(err)
		}
		prev := r
		r = mustNew(t, ms)
		if n < 3 {
			continue
		}
		hi, lo := spread(r, 3)
		worstHi, worstLo = max(worstHi, hi), min(worstLo, lo)
		// (random tokens: up to 1.35, TestBalance).
		if hi > maxSpread || lo < minSpread {
			t.Errorf("%d nodes: max/mean %.3f, min/mean %.3f; want within %.2f and %.2f", n, hi, lo, maxSpread, minSpread)
		}
		if !slices.Contains([]int{3, 4, 8, 16, 32, 64}, n) {
			continue
		}
		joinMoved := 0.0
		if prev.Len() >= 3 {
			joinMoved = movedFraction(prev, r, 3) / (r.Shares(3)[joiner] * 3)
		}
		rest, err := Release(r, []string{"node-01"}, 3)
		if err != nil {
			t.Fatal(err)
		}
		left := mustNew(t, rest)
		lhi, llo := spread(left, 3)
		leaveMoved := movedFraction(r, left, 3) / (r.Shares(3)["node-01"] * 3)
		// One of the first three members, whose tokens are evenly
		// spaced, leaving: the case that wide arcs made hard (1.137 at 64
		// nodes before arcWeight).
		if lhi > maxSpreadAfterLeaves || llo < minSpreadAfterLeaves || leaveMoved > 1.1 {
			t.Errorf("%d nodes, node-01 left: max/mean %.3f, min/mean %.3f, moved %.3fx what it held", n, lhi, llo, leaveMoved)
		}
		t.Logf("%5d | %8.3f %8.3f %10.3f | %8.3f %8.3f %10.3f", n, hi, lo, joinMoved, lhi, llo, leaveMoved)
	}
	t.Logf("3-64 nodes, RF=3, 20 vnodes: max/mean <= %.3f, min/mean >= %.3f", worstHi, worstLo)
}

// A join or a leave moves close to the optimum over random join and leave
// sequences: at most 1.1x what the joining member gains, or what the
// leaving member held. Old members keep their number of tokens on a join
// (nudge moves some of them a little, within their neighbours) and gain
// the leaver's on a leave.
func TestAllocateMovesCloseToTheOptimum(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 11))
	var r *Ring
	next := 0
	worstJoin, worstLeave := 0.0, 0.0
	for step := range 60 {
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
		if r == nil {
			r = nr
			continue
		}
		for _, m := range r.Members() {
			if m.Name == left {
				continue
			}
			old, now := len(sortedTokens(r, m.Name)), len(sortedTokens(nr, m.Name))
			if joined != "" && now != old || left != "" && now < old {
				t.Fatalf("step %d: %s had %d tokens, has %d", step, m.Name, old, now)
			}
		}
		moved := movedFraction(r, nr, 3)
		if left != "" {
			held := r.Shares(3)[left] * 3
			worstLeave = max(worstLeave, moved/held)
			if moved > held*1.1 {
				t.Fatalf("step %d: %.4f of the key space moved for %.4f held by %s", step, moved, held, left)
			}
		}
		if joined != "" {
			gained := nr.Shares(3)[joined] * 3
			worstJoin = max(worstJoin, moved/gained)
			if moved > gained*1.1 {
				t.Fatalf("step %d: %.4f of the key space moved for %.4f gained by %s", step, moved, gained, joined)
			}
		}
		r = nr
	}
	t.Logf("moved / optimum: joins <= %.3f, leaves <= %.3f", worstJoin, worstLeave)
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
		if hi > maxSpreadAfterLeaves || lo < minSpreadAfterLeaves {
			t.Errorf("without %s (%d nodes): max/mean %.3f, min/mean %.3f; want within %.2f and %.2f", gone, r.Len(), hi, lo, maxSpreadAfterLeaves, minSpreadAfterLeaves)
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
