package ring

import (
	"fmt"
	"slices"
	"testing"
)

func TestRangeContains(t *testing.T) {
	const top = ^uint64(0)
	for _, tt := range []struct {
		r    Range
		pos  uint64
		want bool
	}{
		{Range{10, 20}, 10, false}, // open at Start
		{Range{10, 20}, 11, true},
		{Range{10, 20}, 20, true}, // closed at End
		{Range{10, 20}, 21, false},
		{Range{20, 10}, 21, true}, // wraps
		{Range{20, 10}, top, true},
		{Range{20, 10}, 0, true},
		{Range{20, 10}, 10, true},
		{Range{20, 10}, 15, false},
		{Range{20, 10}, 20, false},
		{Range{5, 5}, 5, true}, // whole ring
		{Range{5, 5}, 0, true},
		{Range{top, 0}, 0, true},
		{Range{top, 0}, top, false},
	} {
		if got := (Move{Range: tt.r}).Contains(tt.pos); got != tt.want {
			t.Errorf("%v.Contains(%d) = %v, want %v", tt.r, tt.pos, got, tt.want)
		}
	}
	if f := (Range{5, 5}).Fraction(); f != 1 {
		t.Errorf("whole ring fraction = %v", f)
	}
	if f := (Range{0, 1 << 62}).Fraction(); f != 0.25 {
		t.Errorf("quarter fraction = %v", f)
	}
}

// TestDiffHand pins Diff on hand-placed tokens: arc splitting at both rings'
// tokens, merging of adjacent arcs, the merge across the wrap, and the
// whole-ring range (Start == End).
func TestDiffHand(t *testing.T) {
	tokens := map[string][]uint64{"a": {100}, "b": {200}, "c": {300}, "d": {150, 250}, "e": {50, 350}}
	ring := func(names ...string) *Ring {
		var ms []Member
		for _, n := range names {
			ms = append(ms, Member{Name: n, VNodes: len(tokens[n])})
		}
		r, err := build(ms, func(name string, i int) uint64 { return tokens[name][i] })
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	ss := func(s ...string) []string { return s }
	for _, tt := range []struct {
		name     string
		old, new *Ring
		rf       int
		want     []Move
	}{
		{"first ring, one token", nil, ring("a"), 3, []Move{
			{Range{100, 100}, nil, ss("a")},
		}},
		{"first ring, two nodes", ring(), ring("a", "b"), 1, []Move{
			{Range{200, 100}, nil, ss("a")},
			{Range{100, 200}, nil, ss("b")},
		}},
		{"arcs merge into the whole ring", ring("a"), ring("a", "c"), 2, []Move{
			{Range{300, 300}, ss("a"), ss("c")},
		}},
		{"join rf=1", ring("a", "b", "c"), ring("a", "b", "c", "d"), 1, []Move{
			{Range{100, 150}, ss("b"), ss("d")},
			{Range{200, 250}, ss("c"), ss("d")},
		}},
		{"join rf=2", ring("a", "b", "c"), ring("a", "b", "c", "d"), 2, []Move{
			{Range{300, 100}, ss("a", "b"), ss("d")},
			{Range{100, 200}, ss("b", "c"), ss("d")}, // (100,150] and (150,200] merged
			{Range{200, 250}, ss("c", "a"), ss("d")},
		}},
		{"join merges across the wrap", ring("a", "b", "c"), ring("a", "b", "c", "e"), 1, []Move{
			{Range{300, 50}, ss("a"), ss("e")}, // (300,350] and (350,50]
		}},
		{"leave", ring("a", "b", "c"), ring("a", "c"), 1, []Move{
			{Range{100, 200}, ss("b"), ss("c")},
		}},
		{"leave, wrapping arc", ring("a", "b", "c"), ring("b", "c"), 1, []Move{
			{Range{300, 100}, ss("a"), ss("b")},
		}},
		{"no change", ring("a", "b"), ring("a", "b"), 2, nil},
		{"to an empty ring", ring("a", "b"), nil, 2, nil},
		{"rf=0", nil, ring("a"), 0, nil},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got := Diff(tt.old, tt.new, tt.rf)
			if !slices.EqualFunc(got, tt.want, func(a, b Move) bool {
				return a.Range == b.Range && slices.Equal(a.From, b.From) && slices.Equal(a.To, b.To)
			}) {
				t.Fatalf("Diff =\n%+v\nwant\n%+v", got, tt.want)
			}
		})
	}
}

// TestDiffFirstRing checks that Diff from no ring covers the whole key space
// with every owner as a destination.
func TestDiffFirstRing(t *testing.T) {
	r := mustNew(t, nodes(5, 20))
	moves := Diff(nil, r, 3)
	for _, id := range randomIDs(5000, 5) {
		checkAgainstDiff(t, moves, id, nil, r.OwnerNames(id, 3))
	}
}

// TestDiffJoinLeave adds one node to, and removes one node from, rings of
// 4..64 nodes (20 vnodes, rf=3) and checks Diff against brute force over 20k
// ids. On a join only the new node may receive data; on a leave only arcs the
// leaver owned may move and it never receives. The logged fractions should
// track the ideal: a join to N+1 nodes changes the owner set of ~RF/(N+1) of
// the ids and creates ~1/(N+1) of the replicas anew (the new node's share).
//
// Measured (20k ids, 20 vnodes, rf=3; the leaver is node-N/2+1 of N):
//
//	 N  join: ids changed (ideal)  join: new replicas (ideal)  leave: ids changed (ideal)  leave: new replicas (ideal)
//	 4  0.527 (0.600)              0.176 (0.200)               0.667 (0.750)               0.222 (0.250)
//	 8  0.320 (0.333)              0.107 (0.111)               0.329 (0.375)               0.110 (0.125)
//	16  0.193 (0.176)              0.064 (0.059)               0.141 (0.188)               0.047 (0.062)
//	32  0.073 (0.091)              0.024 (0.030)               0.104 (0.094)               0.035 (0.031)
//	64  0.047 (0.046)              0.016 (0.015)               0.043 (0.047)               0.014 (0.016)
//
// With 20 vnodes a node's share varies by ±30%, so these are only checked
// for being logged, not bounded; what is asserted is the Diff contract.
func TestDiffJoinLeave(t *testing.T) {
	const rf = 3
	ids := randomIDs(20000, 7)
	t.Logf("%3s  %-27s  %-27s  %-27s  %s", "N", "join: ids changed (ideal)", "join: new replicas (ideal)", "leave: ids changed (ideal)", "leave: new replicas (ideal)")
	for n := 4; n <= 64; n++ {
		base := nodes(n, DefaultVNodes)
		old := mustNew(t, base)
		joiner := fmt.Sprintf("node-%d", n+1)
		joined := mustNew(t, nodes(n+1, DefaultVNodes))
		leaver := base[n/2].Name
		left := mustNew(t, slices.Delete(slices.Clone(base), n/2, n/2+1))

		joinMoves := Diff(old, joined, rf)
		for _, m := range joinMoves {
			if !slices.Equal(m.To, []string{joiner}) || slices.Contains(m.From, joiner) {
				t.Fatalf("N=%d join: move %+v sends to someone other than %s", n, m, joiner)
			}
		}
		leaveMoves := Diff(old, left, rf)
		for _, m := range leaveMoves {
			if !slices.Contains(m.From, leaver) || slices.Contains(m.To, leaver) || len(m.To) != 1 {
				t.Fatalf("N=%d leave of %s: unexpected move %+v", n, leaver, m)
			}
		}

		joinIDs, joinNew := measure(t, ids, old, joined, joinMoves, rf)
		leaveIDs, leaveNew := measure(t, ids, old, left, leaveMoves, rf)
		if slices.Contains([]int{4, 5, 8, 12, 16, 24, 32, 48, 64}, n) {
			t.Logf("%3d  %.3f (%.3f) %14s  %.3f (%.3f) %14s  %.3f (%.3f) %14s  %.3f (%.3f)", n,
				joinIDs, rf/float64(n+1), "", joinNew, 1/float64(n+1), "",
				leaveIDs, rf/float64(n), "", leaveNew, 1/float64(n))
		}
	}
}

// measure checks every id against the Diff contract and returns the fraction
// of ids whose owner set changed and the fraction of new replica placements.
func measure(t *testing.T, ids []string, old, new *Ring, moves []Move, rf int) (idsChanged, replicasNew float64) {
	t.Helper()
	changed, gained := 0, 0
	for _, id := range ids {
		before, after := old.OwnerNames(id, rf), new.OwnerNames(id, rf)
		checkAgainstDiff(t, moves, id, before, after)
		g := 0
		for _, o := range after {
			if !slices.Contains(before, o) {
				g++
			}
		}
		if g > 0 {
			changed++
		}
		gained += g
	}
	return float64(changed) / float64(len(ids)), float64(gained) / float64(len(ids)*rf)
}

// checkAgainstDiff asserts the Diff contract for one id: the Move containing
// Position(id), if any, is unique, lists the old owners as From and exactly
// new owners \ old owners as To; with no Move, no owner is new.
func checkAgainstDiff(t testing.TB, moves []Move, id string, before, after []string) {
	t.Helper()
	var gained []string
	for _, n := range after {
		if !slices.Contains(before, n) {
			gained = append(gained, n)
		}
	}
	pos := Position(id)
	var found []Move
	for _, m := range moves {
		if m.Contains(pos) {
			found = append(found, m)
		}
	}
	switch {
	case len(found) > 1:
		t.Fatalf("id %q in %d overlapping moves: %v", id, len(found), found)
	case len(found) == 0 && len(gained) > 0:
		t.Fatalf("id %q gains %v (owners %v -> %v) but no Move covers it", id, gained, before, after)
	case len(found) == 1 && (!slices.Equal(found[0].To, gained) || !slices.Equal(found[0].From, before)):
		t.Fatalf("id %q: owners %v -> %v, but its Move is %+v", id, before, after, found[0])
	}
}
