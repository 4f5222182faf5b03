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
// committed ring keep theirs, so nothing moves between them; each member
// new to it gets tokens chosen by ring.Allocate to even out the replica
// load at rf; members that left take theirs away. A join therefore moves
// only what the new member gains, and a leave only what the leaver held.
// With rf <= 0, or members that do not form a ring, target is returned as
// it is (tokens derived from names).
func placeTarget(committed, target []membership.Member, rf int) []membership.Member {
	if rf <= 0 {
		return target
	}
	var kept []membership.Member
	var joining []ring.Member
	for _, m := range target {
		if i := memberIndex(committed, m.Name); i >= 0 && committed[i].VNodes == m.VNodes {
			m.Tokens = committed[i].Tokens
			kept = append(kept, m)
			continue
		}
		joining = append(joining, ring.Member{Name: m.Name, Addr: m.Addr, VNodes: m.VNodes})
	}
	current, err := ringOf(kept)
	if err != nil {
		return target
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
