package ring

import "slices"

// View is the routing snapshot one request or one pass uses: the ring
// data is placed by (Current) and, while a migration towards it runs, the
// ring it moves to (Target; nil otherwise). Writes during a migration go
// to the owners of both rings.
type View struct {
	Current *Ring
	Target  *Ring
	RF      int
}

// Owners returns id's owners in Current (old) and in Target (pending, nil
// outside a migration).
func (v View) Owners(id string) (old, pending []Member) {
	if v.Current != nil {
		old = v.Current.Owners(id, v.RF)
	}
	if v.Target != nil {
		pending = v.Target.Owners(id, v.RF)
	}
	return old, pending
}

// owns reports whether self holds a replica of position pos in the view
// (in Current or in Target).
func (v View) owns(self string, pos uint64) bool {
	for _, r := range []*Ring{v.Current, v.Target} {
		if r == nil {
			continue
		}
		var buf [8]int32
		for _, m := range r.walk(pos, v.RF, buf[:0]) {
			if r.members[m].Name == self {
				return true
			}
		}
	}
	return false
}

// OwnershipChanges returns the arcs of the key space where whether self
// holds a replica (in Current or Target) differs between views a and b,
// in ring order, adjacent arcs merged; a Range with Start == End is the
// whole ring. After a ring swap these are the only arcs whose local copies
// change state (turn stale, or are owned again), so a garbage collection
// of them need not read the rest of the store.
func OwnershipChanges(a, b View, self string) []Range {
	var bounds []uint64
	for _, r := range []*Ring{a.Current, a.Target, b.Current, b.Target} {
		if r != nil {
			bounds = append(bounds, r.tokens...)
		}
	}
	slices.Sort(bounds)
	return arcsWhere(slices.Compact(bounds), func(end uint64) bool { return a.owns(self, end) != b.owns(self, end) })
}

// SharedArcs returns the arcs of r where both a and b hold a replica
// (with replication factor rf), in ring order, adjacent arcs merged; a
// Range with Start == End is the whole ring. Anti-entropy between a and b
// compares the blocks of these arcs only.
func SharedArcs(r *Ring, rf int, a, b string) []Range {
	if r == nil {
		return nil
	}
	var buf [8]int32
	return arcsWhere(r.tokens, func(end uint64) bool {
		hasA, hasB := false, false
		for _, m := range r.walk(end, rf, buf[:0]) {
			hasA = hasA || r.members[m].Name == a
			hasB = hasB || r.members[m].Name == b
		}
		return hasA && hasB
	})
}

// arcsWhere returns the arcs (prev, end] between consecutive sorted bounds
// for which keep(end) holds, merged where adjacent (across the wrap too).
// Every position of such an arc has the owners end has in each ring whose
// tokens are among bounds, so keep decides for the whole arc. When every
// arc is kept the result is one Range{last, last}: the whole ring.
func arcsWhere(bounds []uint64, keep func(end uint64) bool) []Range {
	if len(bounds) == 0 {
		return nil
	}
	var out []Range
	prev := bounds[len(bounds)-1]
	for _, end := range bounds {
		if keep(end) {
			if k := len(out) - 1; k >= 0 && out[k].End == prev {
				out[k].End = end
			} else {
				out = append(out, Range{Start: prev, End: end})
			}
		}
		prev = end
	}
	if k := len(out) - 1; k > 0 && out[k].End == out[0].Start {
		out[0].Start = out[k].Start
		out = out[:k]
	}
	return out
}
