package ring

import "slices"

// Range is the half-open arc (Start, End] of ring positions, walking
// clockwise from Start. It wraps past 2^64-1 when Start > End; Start == End
// is the whole ring (Diff returns it when one Move covers every position, as
// when the first ring has a single token).
type Range struct {
	Start, End uint64
}

// Contains reports whether position pos lies in the arc.
func (r Range) Contains(pos uint64) bool {
	switch {
	case r.Start < r.End:
		return r.Start < pos && pos <= r.End
	case r.Start > r.End:
		return pos > r.Start || pos <= r.End
	default:
		return true
	}
}

// Fraction is the share of the key space (0..1] the arc covers, for
// reporting how much data a change moves.
func (r Range) Fraction() float64 {
	if r.Start == r.End {
		return 1
	}
	return float64(r.End-r.Start) / (1 << 64)
}

// Move is one arc of the key space whose owners gain members between two
// rings.
type Move struct {
	Range Range
	// From lists the old owners of the arc in preference order; it is empty
	// when the old ring was empty (nothing to send).
	From []string
	// To lists the new owners that were not old owners, in the new ring's
	// preference order; it is never empty.
	To []string
}

// Contains reports whether position pos lies in the move's range; a block id
// belongs to the move when Contains(Position(id)).
func (m Move) Contains(pos uint64) bool { return m.Range.Contains(pos) }

// Diff returns every arc of the key space whose owners under new (with
// replication factor rf) include a node that was not an owner under old,
// in ring order. Arcs are split at every token of both rings, so owners are
// constant within each arc, and adjacent arcs with identical From and To are
// merged. A nil ring is an empty one: Diff(nil, r, rf) describes a cluster's
// first ring (every Move has an empty From). Blocks outside every Move keep
// an owner set that only shrinks or stays, so they need no transfer; copies a
// node no longer owns become stale and are collected later.
//
// The migration executes each Move once: the first old owner in From that
// takes part in the round sends its blocks in Range to every node in To,
// after asking the other live old owners in From for newer versions (a
// write acknowledged by W of the RF old owners is held by one of any
// RF-W+1 of them). Transfers are idempotent by version (last writer wins).
func Diff(old, new *Ring, rf int) []Move {
	if old == nil {
		old = &Ring{}
	}
	if new == nil {
		new = &Ring{}
	}
	if rf <= 0 || len(new.tokens) == 0 {
		return nil
	}
	bounds := slices.Concat(old.tokens, new.tokens)
	slices.Sort(bounds)
	bounds = slices.Compact(bounds)

	var moves []Move
	var buf [8]int32
	prev := bounds[len(bounds)-1]
	for _, end := range bounds {
		// Every position in (prev, end] has the same first token >= it in
		// both rings, hence the same owners as end itself.
		from := old.ownerNamesAt(end, rf)
		var to []string
		for _, m := range new.walk(end, rf, buf[:0]) {
			if name := new.members[m].Name; !slices.Contains(from, name) {
				to = append(to, name)
			}
		}
		if len(to) > 0 {
			if k := len(moves) - 1; k >= 0 && moves[k].Range.End == prev && sameMove(moves[k], from, to) {
				moves[k].Range.End = end
			} else {
				moves = append(moves, Move{Range: Range{Start: prev, End: end}, From: from, To: to})
			}
		}
		prev = end
	}
	// The first arc starts at the last bound, so the last Move may continue
	// straight into the first one across the wrap.
	if k := len(moves) - 1; k > 0 && moves[k].Range.End == moves[0].Range.Start && sameMove(moves[0], moves[k].From, moves[k].To) {
		moves[0].Range.Start = moves[k].Range.Start
		moves = moves[:k]
	}
	return moves
}

func sameMove(m Move, from, to []string) bool {
	return slices.Equal(m.From, from) && slices.Equal(m.To, to)
}
