package antientropy

import (
	"fmt"

	"github.com/goblocks/goblocks/node/ring"
	"github.com/goblocks/goblocks/node/storage"
)

// ViewFunc returns the ring this node routes by, its replication factor,
// and whether a migration is under way (then anti-entropy stands aside).
// A nil ring means the node has none yet. It must be safe for concurrent
// use and must not block.
type ViewFunc func() (r *ring.Ring, rf int, migrating bool)

// Local answers a peer's digest and listing requests from this node's
// engine. It is safe for concurrent use.
type Local struct {
	Self   string
	Engine storage.Engine
	View   ViewFunc
}

// scope checks that the caller routes by the same stable ring and names a
// peer in it.
func (l *Local) scope(peer, ringID string) (Scope, error) {
	r, rf, migrating := l.View()
	switch {
	case r == nil:
		return Scope{}, ErrNoRing
	case migrating:
		return Scope{}, ErrMigrating
	case RingID(r, rf) != ringID:
		return Scope{}, fmt.Errorf("%w: %s has %s, peer sent %q", ErrRingMismatch, l.Self, RingID(r, rf), ringID)
	}
	if _, ok := r.Member(peer); !ok || peer == l.Self {
		return Scope{}, fmt.Errorf("%w: %q", ErrUnknownPeer, peer)
	}
	return Scope{Ring: r, RF: rf, Self: l.Self, Peer: peer}, nil
}

// Digests returns the bucket digests of the blocks this node and peer
// both own in the ring ringID.
func (l *Local) Digests(peer, ringID string) ([]uint64, error) {
	s, err := l.scope(peer, ringID)
	if err != nil {
		return nil, err
	}
	return Digest(l.Engine.ScanRange, s)
}

// Entries lists this node's records in buckets that peer owns too.
func (l *Local) Entries(peer, ringID string, buckets []int) ([]Entry, error) {
	if err := ValidBuckets(buckets); err != nil {
		return nil, err
	}
	s, err := l.scope(peer, ringID)
	if err != nil {
		return nil, err
	}
	return Collect(l.Engine.ScanRange, s, buckets)
}
