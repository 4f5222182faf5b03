package pebble

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math"

	pebbledb "github.com/cockroachdb/pebble"

	"github.com/goblocks/goblocks/node/ring"
)

// layout is where a block's keys go. The id layout keys each family by id
// (m/<id>, d/<id>); the position layout by ring position then id
// (pm/<position, 8 bytes big-endian><id>, pd/...), so the blocks of a
// ring arc are one key range: a migration, or a GC of the arcs a ring
// change moved, reads only what it concerns. The data store uses the
// position layout, the hints store (keyed by target node) the id layout.
//
// The two layouts have different prefixes so a store being converted
// (Open moves an id-layout store written by an older version) holds both
// without ambiguity, and the layoutKey marker records which one a store is
// in once it is complete.
type layout struct {
	byPosition bool
	meta, data string // family prefixes
}

var (
	idLayout       = layout{meta: "m/", data: "d/"}
	positionLayout = layout{byPosition: true, meta: "pm/", data: "pd/"}
)

// layoutKey holds the layout name of a complete store; outside every
// family. Stores written before it existed have none and use the id
// layout.
const layoutKey = "layout"

func (l layout) name() string {
	if l.byPosition {
		return "position-xxh64-v1"
	}
	return "id-v1"
}

func (l layout) key(prefix, id string) []byte {
	k := make([]byte, 0, len(prefix)+8+len(id))
	k = append(k, prefix...)
	if l.byPosition {
		k = binary.BigEndian.AppendUint64(k, ring.Position(id))
	}
	return append(k, id...)
}

func (l layout) metaKey(id string) []byte { return l.key(l.meta, id) }
func (l layout) dataKey(id string) []byte { return l.key(l.data, id) }

// familyEnd is the exclusive upper bound of a family: the prefix with its
// trailing '/' replaced by '0' ('/'+1).
func familyEnd(prefix string) []byte {
	return append([]byte(prefix[:len(prefix)-1]), '0')
}

// idOf returns the block id of a meta key of this layout.
func (l layout) idOf(key []byte) string {
	n := len(l.meta)
	if l.byPosition {
		n += 8
	}
	return string(key[n:])
}

// posKey is the least meta key at ring position p.
func (l layout) posKey(p uint64) []byte {
	return binary.BigEndian.AppendUint64([]byte(l.meta), p)
}

// arcBounds returns the [lower, upper) meta-key intervals holding the
// positions of arc r, clockwise from r.Start: one, or two when it wraps.
func (l layout) arcBounds(r ring.Range) [][2][]byte {
	all := [2][]byte{[]byte(l.meta), familyEnd(l.meta)}
	// from(p) starts at position p; upTo(p) ends after position p.
	from := func(p uint64) []byte { return l.posKey(p) }
	upTo := func(p uint64) []byte {
		if p == math.MaxUint64 {
			return all[1]
		}
		return l.posKey(p + 1)
	}
	switch {
	case r.Start < r.End:
		return [][2][]byte{{from(r.Start + 1), upTo(r.End)}}
	case r.Start == math.MaxUint64:
		// Wraps at once: (max, end], or the whole ring when end == max.
		return [][2][]byte{{all[0], upTo(r.End)}}
	default:
		// Wraps (start > end), or the whole ring clockwise from start.
		return [][2][]byte{{from(r.Start + 1), all[1]}, {all[0], upTo(r.End)}}
	}
}

// convertBatch is how many records one conversion batch moves.
const convertBatch = 256

// settleLayout makes the store's layout want: an empty store is marked,
// an id-layout store (no marker, written by an older version) is moved to
// the position layout in batches, each atomic, so a crash midway leaves
// records in both families and the next Open finishes the move. A store
// in the position layout opened for the id layout is refused: a
// downgrade would see no blocks.
func settleLayout(db *pebbledb.DB, want layout, readOnly bool, logf func(string, ...any)) error {
	v, closer, err := db.Get([]byte(layoutKey))
	switch {
	case err == nil:
		have := string(v)
		closer.Close()
		if have == want.name() {
			return nil
		}
		if have != idLayout.name() || !want.byPosition {
			// Not ErrCorrupt: that would move an intact store aside.
			return fmt.Errorf("the store's key layout is %q, this store is opened for %q (written by a newer version?)", have, want.name())
		}
	case !errors.Is(err, pebbledb.ErrNotFound):
		return err
	}
	if !want.byPosition {
		// An id-layout store never needs moving; mark it if it is new.
		if readOnly {
			return nil
		}
		return db.Set([]byte(layoutKey), []byte(want.name()), pebbledb.Sync)
	}
	if readOnly {
		// Reads go to the position families; a store still in the id
		// layout cannot be served read-only.
		if n, err := countFamily(db, idLayout.meta); err != nil || n > 0 {
			return errors.Join(err, fmt.Errorf("the store must be converted to the position layout, which a read-only open cannot do"))
		}
		return nil
	}
	moved := 0
	for {
		n, err := convertSome(db)
		if err != nil {
			return fmt.Errorf("converting to the position layout: %w", err)
		}
		if n == 0 {
			break
		}
		moved += n
		if moved%(convertBatch*400) < n {
			logf("pebble: converting to the position layout: %d records moved", moved)
		}
	}
	if moved > 0 {
		logf("pebble: converted %d records to the position layout", moved)
	}
	return db.Set([]byte(layoutKey), []byte(want.name()), pebbledb.Sync)
}

// convertSome moves up to convertBatch records from the id layout to the
// position layout in one synced batch and returns how many it moved.
func convertSome(db *pebbledb.DB) (int, error) {
	it, err := db.NewIter(&pebbledb.IterOptions{LowerBound: []byte(idLayout.meta), UpperBound: familyEnd(idLayout.meta)})
	if err != nil {
		return 0, err
	}
	b := db.NewBatch()
	defer b.Close()
	n := 0
	for ok := it.First(); ok && n < convertBatch; ok = it.Next() {
		id := idLayout.idOf(it.Key())
		meta := bytes.Clone(it.Value())
		data, closer, err := db.Get(idLayout.dataKey(id))
		switch {
		case err == nil:
			err = b.Set(positionLayout.dataKey(id), data, nil)
			closer.Close()
		case errors.Is(err, pebbledb.ErrNotFound):
			err = nil // a tombstone: metadata only
		}
		if err == nil {
			err = errors.Join(b.Set(positionLayout.metaKey(id), meta, nil),
				b.Delete(idLayout.metaKey(id), nil), b.Delete(idLayout.dataKey(id), nil))
		}
		if err != nil {
			it.Close()
			return 0, err
		}
		n++
	}
	if err := errors.Join(it.Error(), it.Close()); err != nil {
		return 0, err
	}
	if n == 0 {
		return 0, nil
	}
	return n, db.Apply(b, pebbledb.Sync)
}

// countFamily counts the keys under prefix.
func countFamily(db *pebbledb.DB, prefix string) (int, error) {
	it, err := db.NewIter(&pebbledb.IterOptions{LowerBound: []byte(prefix), UpperBound: familyEnd(prefix)})
	if err != nil {
		return 0, err
	}
	n := 0
	for ok := it.First(); ok; ok = it.Next() {
		n++
	}
	return n, errors.Join(it.Error(), it.Close())
}
