//go:build e2e

package e2e

import (
	"slices"
	"strconv"

	"github.com/cespare/xxhash/v2"
)

// ringModel is an independent model of the node's placement rule (see the
// node's README and DESIGN.md: each member holds VNodes tokens
// xxHash64(name + "#" + i); a block sits at xxHash64(id); its owners are the
// first RF distinct members clockwise from the first token >= that
// position, colliding tokens ordered by member name). It is written here
// from the specification rather than imported, so the placement check is a
// second opinion on the ring, not the ring checking itself.
type ringModel struct {
	tokens []ringToken
	n      int // distinct members
}

type ringToken struct {
	token uint64
	name  string
	vnode int
}

func newRingModel(vnodes map[string]int) ringModel {
	var ts []ringToken
	for name, n := range vnodes {
		for i := range n {
			ts = append(ts, ringToken{xxhash.Sum64String(name + "#" + strconv.Itoa(i)), name, i})
		}
	}
	slices.SortFunc(ts, func(a, b ringToken) int {
		switch {
		case a.token != b.token:
			if a.token < b.token {
				return -1
			}
			return 1
		case a.name != b.name:
			if a.name < b.name {
				return -1
			}
			return 1
		}
		return a.vnode - b.vnode
	})
	return ringModel{tokens: ts, n: len(vnodes)}
}

// owners returns the rf owners of id, sorted by name.
func (r ringModel) owners(id string, rf int) []string {
	rf = min(rf, r.n)
	pos := xxhash.Sum64String(id)
	i, _ := slices.BinarySearchFunc(r.tokens, pos, func(t ringToken, p uint64) int {
		switch {
		case t.token < p:
			return -1
		case t.token > p:
			return 1
		}
		return 0
	})
	var out []string
	for range r.tokens {
		if len(out) == rf {
			break
		}
		if i == len(r.tokens) {
			i = 0
		}
		if name := r.tokens[i].name; !slices.Contains(out, name) {
			out = append(out, name)
		}
		i++
	}
	slices.Sort(out)
	return out
}
