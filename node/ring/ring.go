// Package ring places blocks on nodes with a consistent-hash ring of virtual
// nodes (vnodes).
//
// A Ring is an immutable value computed from a member list: it does no I/O,
// holds no locks and starts no goroutines, so it is safe for concurrent use
// and trivially testable. On a membership change callers build a new Ring and
// swap it in atomically; Diff between the two says which key ranges must move.
//
// Every member contributes VNodes tokens: chosen by Allocate to balance the
// replica load and recorded with the member, or else xxh64(name + "#" + i).
// A block's
// position is xxh64(id), and its owners are the first RF distinct physical
// nodes met walking clockwise (towards larger tokens, wrapping past 2^64-1)
// from the first token >= its position. Placement depends only on member
// names and vnode counts, never on addresses, so every node computes the same
// owners from the same member list.
package ring

import (
	"cmp"
	"errors"
	"fmt"
	"slices"
	"strconv"
)

// DefaultVNodes is the vnode count per member when the operator sets none. It
// is the original design's value. With tokens derived from names (xxHash64)
// the most loaded of 4–64 nodes holds up to ~1.35x the mean number of
// replicas (see TestBalance); with tokens chosen by Allocate, ~1.06x
// (TestAllocateBalance).
const DefaultVNodes = 20

// MaxVNodes bounds a member's vnode count. Member lists come from other
// processes (ZooKeeper znodes); without a bound, one bad value would make
// every node allocate gigabytes when it builds the ring.
const MaxVNodes = 4096

// Errors returned by New, checked with errors.Is.
var (
	// ErrInvalidMember reports a member with an empty name or a vnode count
	// outside 1..MaxVNodes.
	ErrInvalidMember = errors.New("ring: invalid member")
	// ErrDuplicateMember reports two members with the same name; names are
	// the identity of a node on the ring, so duplicates would make two
	// processes claim the same tokens.
	ErrDuplicateMember = errors.New("ring: duplicate member")
)

// Member is one physical node as the ring sees it.
type Member struct {
	// Name is the node's unique logical name (ReplicaName). It alone
	// determines the node's tokens, so a node that restarts with the same
	// name owns the same blocks.
	Name string
	// Addr is the host:port peers dial. It is carried for callers and plays
	// no part in placement, so a changed address moves no data.
	Addr string
	// VNodes is how many tokens the node holds (1..MaxVNodes); a node's
	// expected share of the key space is proportional to it.
	VNodes int
	// Tokens, when set, are the node's tokens, chosen by Allocate (VNodes
	// of them) and Release (which hands a leaving node's tokens to the
	// others, so a node may hold more than VNodes), and recorded in the
	// committed ring so every node agrees. When empty, VNodes tokens are
	// derived from Name. VNodes stays the node's weight: its target share
	// of replicas is proportional to it.
	Tokens []uint64
}

// VNode is one token on the ring and the node that holds it.
type VNode struct {
	Token uint64
	Node  string
}

// Ring is an immutable placement of blocks onto members. The zero value is an
// empty ring (a nil *Ring is accepted only by Diff). All methods are safe for
// concurrent use.
type Ring struct {
	members []Member // sorted by Name
	// tokens is sorted ascending; owner[i] indexes members for tokens[i].
	// Colliding tokens sit side by side ordered by member name, then vnode
	// number, so a collision is resolved the same way on every node and no
	// vnode is dropped.
	tokens []uint64
	owner  []int32
}

// New builds the ring for members. The order of members does not matter. An
// empty list gives an empty ring (Owners returns nil), which is the state of
// a cluster before its first node joins.
func New(members []Member) (*Ring, error) {
	return build(members, defaultToken)
}

// Position is where a block id sits on the ring. It is exported so callers
// can test positions against Move ranges.
func Position(id string) uint64 { return xxh64(id) }

// defaultToken is the token of vnode i of node name. Because strconv.Itoa
// never produces '#', name+"#"+i is unique across (name, i) pairs.
func defaultToken(name string, i int) uint64 {
	return xxh64(name + "#" + strconv.Itoa(i))
}

// build is New with a swappable token function, so tests can place vnodes by
// hand and force collisions (as groupcache's consistenthash does with its
// hash).
func build(members []Member, token func(name string, i int) uint64) (*Ring, error) {
	ms := slices.Clone(members)
	total := 0
	for i, m := range ms {
		if m.Name == "" {
			return nil, fmt.Errorf("%w: member %d has an empty name", ErrInvalidMember, i)
		}
		if m.VNodes <= 0 || m.VNodes > MaxVNodes {
			return nil, fmt.Errorf("%w: %q has %d vnodes, want 1..%d", ErrInvalidMember, m.Name, m.VNodes, MaxVNodes)
		}
		if len(m.Tokens) > MaxVNodes {
			return nil, fmt.Errorf("%w: %q has %d tokens, at most %d", ErrInvalidMember, m.Name, len(m.Tokens), MaxVNodes)
		}
		total += max(m.VNodes, len(m.Tokens))
	}
	slices.SortFunc(ms, func(a, b Member) int { return cmp.Compare(a.Name, b.Name) })
	for i := 1; i < len(ms); i++ {
		if ms[i].Name == ms[i-1].Name {
			return nil, fmt.Errorf("%w: %q", ErrDuplicateMember, ms[i].Name)
		}
	}

	type vnode struct {
		token  uint64
		member int32
		n      int32
	}
	vs := make([]vnode, 0, total)
	for mi, m := range ms {
		if len(m.Tokens) != 0 {
			for n, t := range m.Tokens {
				vs = append(vs, vnode{t, int32(mi), int32(n)})
			}
			continue
		}
		for n := range m.VNodes {
			vs = append(vs, vnode{token(m.Name, n), int32(mi), int32(n)})
		}
	}
	// Members are sorted by name, so ordering ties by member index orders
	// colliding vnodes by node name.
	slices.SortFunc(vs, func(a, b vnode) int {
		return cmp.Or(cmp.Compare(a.token, b.token), cmp.Compare(a.member, b.member), cmp.Compare(a.n, b.n))
	})
	r := &Ring{members: ms, tokens: make([]uint64, len(vs)), owner: make([]int32, len(vs))}
	for i, v := range vs {
		r.tokens[i], r.owner[i] = v.token, v.member
	}
	return r, nil
}

// Len is the number of members.
func (r *Ring) Len() int { return len(r.members) }

// Members returns the members sorted by name. The slice is the caller's.
func (r *Ring) Members() []Member { return slices.Clone(r.members) }

// Member returns the member called name, if any.
func (r *Ring) Member(name string) (Member, bool) {
	i, ok := slices.BinarySearchFunc(r.members, name, func(m Member, name string) int { return cmp.Compare(m.Name, name) })
	if !ok {
		return Member{}, false
	}
	return r.members[i], true
}

// VNodes lists every token with its node, sorted by token (colliding tokens
// by node name), for vnode tables in the UI and CLI.
func (r *Ring) VNodes() []VNode {
	out := make([]VNode, len(r.tokens))
	for i, t := range r.tokens {
		out[i] = VNode{Token: t, Node: r.members[r.owner[i]].Name}
	}
	return out
}

// Owners returns the replicas of block id in preference order: the first rf
// distinct members clockwise from Position(id), or all members if there are
// fewer than rf. It returns nil for an empty ring or rf <= 0. The result is
// deterministic and allocated fresh for the caller.
//
// Owners is on every request's path: it costs one hash, one binary search
// and a walk of a few vnodes, and allocates only the result.
func (r *Ring) Owners(id string, rf int) []Member {
	return r.OwnersAt(Position(id), rf)
}

// OwnersAt is Owners for a ring position rather than an id, for callers that
// reason about ranges (migration planning, anti-entropy).
func (r *Ring) OwnersAt(pos uint64, rf int) []Member {
	var buf [8]int32
	idx := r.walk(pos, rf, buf[:0])
	if len(idx) == 0 {
		return nil
	}
	out := make([]Member, len(idx))
	for i, m := range idx {
		out[i] = r.members[m]
	}
	return out
}

// OwnerNames is Owners returning only names, in the same order.
func (r *Ring) OwnerNames(id string, rf int) []string {
	return r.ownerNamesAt(Position(id), rf)
}

func (r *Ring) ownerNamesAt(pos uint64, rf int) []string {
	var buf [8]int32
	idx := r.walk(pos, rf, buf[:0])
	if len(idx) == 0 {
		return nil
	}
	out := make([]string, len(idx))
	for i, m := range idx {
		out[i] = r.members[m].Name
	}
	return out
}

// IsOwner reports whether node name is among the rf owners of block id. It
// does not allocate (for rf <= 8), so replicas can check cheaply whether an
// incoming block is theirs.
func (r *Ring) IsOwner(name, id string, rf int) bool {
	var buf [8]int32
	for _, m := range r.walk(Position(id), rf, buf[:0]) {
		if r.members[m].Name == name {
			return true
		}
	}
	return false
}

// walk appends to dst the member indexes of the first rf distinct members
// clockwise from pos. Distinctness is checked by scanning dst, which beats a
// set for the small rf used in practice; the walk visits each vnode at most
// once, so it ends even when rf exceeds the member count.
func (r *Ring) walk(pos uint64, rf int, dst []int32) []int32 {
	rf = min(rf, len(r.members))
	n := len(r.tokens)
	if rf <= 0 || n == 0 {
		return dst
	}
	i, _ := slices.BinarySearch(r.tokens, pos) // first token >= pos
	for range n {
		if i == n {
			i = 0 // wrap past 2^64-1
		}
		if m := r.owner[i]; !slices.Contains(dst, m) {
			dst = append(dst, m)
			if len(dst) == rf {
				break
			}
		}
		i++
	}
	return dst
}

// Shares returns, for each member, the fraction of the key space for which
// it is among the rf owners, divided by the effective replication factor
// min(rf, Len()) so the shares sum to 1. Multiplied by the number of stored
// replicas it predicts each node's block count; max/mean is the ring's
// imbalance. It is exact (computed from arcs, not sampled).
func (r *Ring) Shares(rf int) map[string]float64 {
	out := make(map[string]float64, len(r.members))
	for _, m := range r.members {
		out[m.Name] = 0
	}
	rf = min(rf, len(r.members))
	if rf <= 0 {
		return out
	}
	var buf [8]int32
	prev := r.tokens[len(r.tokens)-1]
	for i, t := range r.tokens {
		if i > 0 && t == r.tokens[i-1] {
			continue // a collision: the arc belongs to the first vnode at t
		}
		f := Range{Start: prev, End: t}.Fraction() / float64(rf)
		for _, m := range r.walk(t, rf, buf[:0]) {
			out[r.members[m].Name] += f
		}
		prev = t
	}
	return out
}

// PrimaryShares is Shares(1): the fraction of the key space each member
// coordinates as first owner.
func (r *Ring) PrimaryShares() map[string]float64 { return r.Shares(1) }
