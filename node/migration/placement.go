package migration

import (
	"github.com/goblocks/goblocks/node/membership"
	"github.com/goblocks/goblocks/node/ring"
)

// ringOf builds the ring of members, with their recorded tokens (or
// tokens derived from their names when they have none).
func ringOf(ms []membership.Member) (*ring.Ring, error) {
	rm := make([]ring.Member, len(ms))
	for i, m := range ms {
		rm[i] = ring.Member{Name: m.Name, Addr: m.Addr, VNodes: m.VNodes, Tokens: m.Tokens}
	}
	return ring.New(rm)
}

// placeTarget gives the members of a new ring their tokens: members of the
// committed ring keep theirs (nudged a little within their neighbours to
// even out the load); members that leave hand theirs to the remaining ones
// (ring.Release); each member new to the ring gets tokens chosen by
// ring.Allocate. Both even out the replica load at rf, and a change moves
// close to what it must: what a new member gains, what a leaver held
// (at most 1.06x and 1.09x of it). With rf <= 0, or members that do not
// form a ring, target is returned as it is (tokens derived from names).
func placeTarget(committed, target []membership.Member, rf int) []membership.Member {
	if rf <= 0 {
		return target
	}
	// The committed ring, minus the members whose vnode count changed
	// (they rejoin with new tokens).
	var kept []membership.Member
	var leaving []string
	for _, m := range committed {
		if i := memberIndex(target, m.Name); i >= 0 && target[i].VNodes == m.VNodes {
			kept = append(kept, m)
		} else {
			leaving = append(leaving, m.Name)
		}
	}
	current, err := ringOf(kept)
	if err != nil {
		return target
	}
	if len(leaving) > 0 && len(kept) > 0 {
		// Leavers' tokens go to the remaining members.
		withLeavers, err := ringOf(committed)
		if err != nil {
			return target
		}
		rest, err := ring.Release(withLeavers, leaving, rf)
		if err != nil {
			return target
		}
		if current, err = ring.New(rest); err != nil {
			return target
		}
	}
	var joining []ring.Member
	for _, m := range target {
		if _, ok := current.Member(m.Name); !ok {
			joining = append(joining, ring.Member{Name: m.Name, Addr: m.Addr, VNodes: m.VNodes})
		}
	}
	placed, err := ring.Allocate(current, joining, rf)
	if err != nil {
		return target
	}
	out := make([]membership.Member, len(placed))
	for i, p := range placed {
		m := target[memberIndex(target, p.Name)]
		m.Tokens = p.Tokens
		out[i] = m
	}
	return membership.SortByName(out)
}

func memberIndex(ms []membership.Member, name string) int {
	for i, m := range ms {
		if m.Name == name {
			return i
		}
	}
	return -1
}
