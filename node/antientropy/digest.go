// Package antientropy converges replicas that hinted handoff missed (a
// replica down past the hint window, hints lost with a coordinator's disk,
// a replica restored from an old backup).
//
// Two nodes compare, for the blocks both own in the same ring, one digest
// per bucket of block ids (a one-level Merkle tree). Only buckets whose
// digests differ are listed as (id, version) pairs; each side then gets
// the records the other holds newer, through the ordinary batch paths, so
// last-writer-wins decides and every exchange is idempotent.
//
// This file is the pure core: bucketing, digests, the diff of two listings
// and the ring fingerprint. It does no I/O beyond calling the scan function
// it is given.
package antientropy

import (
	"cmp"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"slices"
	"strconv"

	"github.com/goblocks/goblocks/node/hlc"
	"github.com/goblocks/goblocks/node/ring"
	"github.com/goblocks/goblocks/node/storage"
	"github.com/goblocks/goblocks/node/wire"
)

// Buckets is how many digests one exchange compares (see
// wire.AntiEntropyBuckets).
const Buckets = wire.AntiEntropyBuckets

// MaxBucketsPerRequest bounds one ids request, so a listing holds at most
// a 1/64th of the blocks two nodes share.
const MaxBucketsPerRequest = 16

// Sentinel errors, checked with errors.Is.
var (
	// ErrNoRing: the node does not know its ring yet.
	ErrNoRing = errors.New("antientropy: no ring yet")
	// ErrMigrating: a migration runs; anti-entropy waits for a stable ring
	// (migrations move the data themselves).
	ErrMigrating = errors.New("antientropy: migration in progress")
	// ErrRingMismatch: the two nodes route by different rings, so they
	// would digest different sets of blocks.
	ErrRingMismatch = errors.New("antientropy: ring differs")
	// ErrUnknownPeer: the peer is this node or not in the ring.
	ErrUnknownPeer = errors.New("antientropy: unknown peer")
	// ErrBadBuckets: a bucket list that is empty, too long or out of range.
	ErrBadBuckets = errors.New("antientropy: invalid bucket list")
)

// Entry is one record in a bucket listing. Tombstones are entries too:
// a missed delete must propagate like a missed write.
type Entry = wire.VersionedID

// bucketWidth is how many ring positions one bucket spans: buckets are
// equal arcs of the ring, so listing one reads only its arc of the store.
const bucketWidth = (1 << 63) / Buckets * 2

// BucketOf is the bucket of block id: the arc of the ring its position is
// in (the high bits of the position).
func BucketOf(id string) int { return int(ring.Position(id) / bucketWidth) }

// bucketArc is the arc of ring positions of bucket b, [b·width, (b+1)·width),
// as a half-open ring.Range (start excluded).
func bucketArc(b int) ring.Range {
	return ring.Range{Start: uint64(b)*bucketWidth - 1, End: uint64(b+1)*bucketWidth - 1}
}

// entryHash hashes one (id, version) pair; a bucket's digest XORs them, so
// it does not depend on scan order. Ids are unique within an engine, so no
// two equal hashes cancel out.
func entryHash(id string, v hlc.Version) uint64 {
	return ring.Position(id + "\x00" + v.String())
}

// Scope is the set of records one node compares with one peer: those both
// own in Ring, that this node does not hold as stale copies (they are
// leaving).
type Scope struct {
	Ring       *ring.Ring
	RF         int
	Self, Peer string
}

// Includes reports whether a record is in the scope.
func (s Scope) Includes(id string, m storage.Meta) bool {
	return m.StaleSince.IsZero() && s.Ring.IsOwner(s.Self, id, s.RF) && s.Ring.IsOwner(s.Peer, id, s.RF)
}

// ScanFunc is storage.Engine.ScanRange.
type ScanFunc func(r ring.Range, fn func(id string, m storage.Meta) bool) error

// Digest reads the arcs both nodes own (ring.SharedArcs) and returns the
// scope's bucket digests (length Buckets).
func Digest(scan ScanFunc, s Scope) ([]uint64, error) {
	d := make([]uint64, Buckets)
	for _, arc := range ring.SharedArcs(s.Ring, s.RF, s.Self, s.Peer) {
		err := scan(arc, func(id string, m storage.Meta) bool {
			if s.Includes(id, m) {
				d[BucketOf(id)] ^= entryHash(id, m.Version)
			}
			return true
		})
		if err != nil {
			return nil, err
		}
	}
	return d, nil
}

// Collect lists the scope's records in the given buckets, reading only
// the buckets' arcs.
func Collect(scan ScanFunc, s Scope, buckets []int) ([]Entry, error) {
	var out []Entry
	for _, b := range slices.Compact(slices.Sorted(slices.Values(buckets))) {
		err := scan(bucketArc(b), func(id string, m storage.Meta) bool {
			if s.Includes(id, m) {
				out = append(out, Entry{ID: id, Version: m.Version})
			}
			return true
		})
		if err != nil {
			return nil, err
		}
	}
	return out, nil
}

// Mismatched returns the buckets whose digests differ. Digest slices of
// different lengths (a peer with another bucket count) differ everywhere.
func Mismatched(local, remote []uint64) []int {
	var out []int
	for b := range max(len(local), len(remote)) {
		if b >= len(local) || b >= len(remote) || local[b] != remote[b] {
			out = append(out, b)
		}
	}
	return out
}

// ValidBuckets checks a requested bucket list.
func ValidBuckets(buckets []int) error {
	if len(buckets) == 0 || len(buckets) > MaxBucketsPerRequest {
		return errors.Join(ErrBadBuckets, errors.New("want 1.."+strconv.Itoa(MaxBucketsPerRequest)+" buckets"))
	}
	for _, b := range buckets {
		if b < 0 || b >= Buckets {
			return errors.Join(ErrBadBuckets, errors.New("bucket "+strconv.Itoa(b)+" out of range"))
		}
	}
	return nil
}

// Diff compares this node's listing with the peer's for the same buckets:
// pull are the ids the peer holds newer (or alone), push the ids this node
// holds newer (or alone). Neither input needs to be sorted; both are
// sorted in place by id. The outputs are in id order.
func Diff(local, remote []Entry) (pull, push []string) {
	byID := func(a, b Entry) int { return cmp.Compare(a.ID, b.ID) }
	slices.SortFunc(local, byID)
	slices.SortFunc(remote, byID)
	i, j := 0, 0
	for i < len(local) || j < len(remote) {
		switch {
		case j == len(remote) || (i < len(local) && local[i].ID < remote[j].ID):
			push = append(push, local[i].ID)
			i++
		case i == len(local) || remote[j].ID < local[i].ID:
			pull = append(pull, remote[j].ID)
			j++
		default:
			switch local[i].Version.Compare(remote[j].Version) {
			case 1:
				push = append(push, local[i].ID)
			case -1:
				pull = append(pull, remote[j].ID)
			}
			i++
			j++
		}
	}
	return pull, push
}

// RingID fingerprints a ring and replication factor: two nodes compare
// digests only when their RingIDs match, so both filter the same blocks.
// It covers what placement depends on (names, vnode counts, RF), not
// addresses.
func RingID(r *ring.Ring, rf int) string {
	h := sha256.New()
	// The bucketing scheme: nodes that bucket blocks differently (an older
	// version bucketed by the low bits) must not compare digests.
	h.Write([]byte("buckets=arcs/" + strconv.Itoa(Buckets) + "\n"))
	h.Write([]byte(strconv.Itoa(rf) + "\n"))
	for _, m := range r.Members() { // sorted by name
		h.Write([]byte(m.Name + "\x00" + strconv.Itoa(m.VNodes) + "\n"))
	}
	// Tokens are recorded in the ring (allocated, not only derived from
	// names): two rings of the same members may place blocks differently.
	for _, v := range r.VNodes() {
		h.Write([]byte(strconv.FormatUint(v.Token, 16) + "\x00" + v.Node + "\n"))
	}
	return hex.EncodeToString(h.Sum(nil)[:12])
}
