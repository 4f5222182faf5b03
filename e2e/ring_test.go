//go:build e2e

package e2e

import (
	"fmt"
	"slices"
	"strconv"

	"github.com/cespare/xxhash/v2"

	goblocks "github.com/goblocks/goblocks/client"
)

// ringModel is an independent model of the node's placement rule (see the
// node's README and DESIGN.md: a block sits at xxHash64(id); its owners are
// the first RF distinct members clockwise from the first token >= that
// position, colliding tokens ordered by member name). The tokens are the
// ones the committed ring records (GET /admin/ring: allocated at join, or
// xxHash64(name + "#" + i) in rings from before allocation). It is written
// here from the specification rather than imported, so the placement check
// is a second opinion on the ring, not the ring checking itself.
type ringModel struct {
	tokens []ringToken
	n      int // distinct members
}

type ringToken struct {
	token uint64
	name  string
	vnode int
}

// newRingModel models the ring /admin/ring describes.
func newRingModel(table *goblocks.RingTable) (ringModel, error) {
	if table == nil {
		return ringModel{}, fmt.Errorf("no ring")
	}
	var ts []ringToken
	names := map[string]bool{}
	for i, v := range table.VNodes {
		tok, err := strconv.ParseUint(v.Token, 10, 64)
		if err != nil {
			return ringModel{}, fmt.Errorf("vnode %d: token %q: %w", i, v.Token, err)
		}
		ts = append(ts, ringToken{tok, v.Node, i})
		names[v.Node] = true
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
	return ringModel{tokens: ts, n: len(names)}, nil
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
