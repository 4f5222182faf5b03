package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"

	"github.com/goblocks/goblocks/node/antientropy"
	"github.com/goblocks/goblocks/node/wire"
)

// AntiEntropy answers peers' digest and listing requests
// (antientropy.Local). Methods may block on a scan of the local engine and
// are safe for concurrent use; errors wrap the antientropy sentinels.
type AntiEntropy interface {
	Digests(peer, ringID string) ([]uint64, error)
	Entries(peer, ringID string, buckets []int) ([]antientropy.Entry, error)
}

// antiEntropyDigest returns the bucket digests of the blocks this node
// shares with ?peer= in the ring ?ring=.
func (s *server) antiEntropyDigest(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	peer, ringID := q.Get("peer"), q.Get("ring")
	if peer == "" || ringID == "" {
		s.fail(w, r, "antientropy", fmt.Errorf("%w: want ?peer=NAME&ring=ID", ErrUnexpectedRequest))
		return
	}
	d, err := s.o.AntiEntropy.Digests(peer, ringID)
	if err != nil {
		s.fail(w, r, "antientropy", err)
		return
	}
	writeJSON(w, http.StatusOK, wire.AntiEntropyDigests{Digests: d})
}

// antiEntropyIDs lists this node's (id, version) pairs in some buckets.
func (s *server) antiEntropyIDs(w http.ResponseWriter, r *http.Request) {
	if r.ContentLength > wire.MaxAntiEntropyIDsRequest {
		s.fail(w, r, "antientropy", fmt.Errorf("%w: body of %d bytes > %d", ErrTooLarge, r.ContentLength, wire.MaxAntiEntropyIDsRequest))
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, wire.MaxAntiEntropyIDsRequest+1))
	if err != nil {
		s.fail(w, r, "antientropy", fmt.Errorf("%w: %w", errClientDisconnected, err))
		return
	}
	if len(body) > wire.MaxAntiEntropyIDsRequest {
		s.fail(w, r, "antientropy", fmt.Errorf("%w: body larger than %d bytes", ErrTooLarge, wire.MaxAntiEntropyIDsRequest))
		return
	}
	var req wire.AntiEntropyIDsRequest
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		s.fail(w, r, "antientropy", fmt.Errorf("%w: %w", wire.ErrMalformed, err))
		return
	}
	if req.Peer == "" || req.Ring == "" {
		s.fail(w, r, "antientropy", fmt.Errorf("%w: want peer and ring", ErrUnexpectedRequest))
		return
	}
	entries, err := s.o.AntiEntropy.Entries(req.Peer, req.Ring, req.Buckets)
	if err != nil {
		s.fail(w, r, "antientropy", err)
		return
	}
	out := wire.AntiEntropyIDsResponse{Entries: make([]wire.AntiEntropyListed, len(entries))}
	for i, e := range entries {
		out.Entries[i] = wire.AntiEntropyListed{ID: e.ID, Version: e.Version.String()}
	}
	writeJSON(w, http.StatusOK, out)
}

// antiEntropyStatus maps the antientropy sentinels; ok is false for other
// errors.
func antiEntropyStatus(err error) (status int, code string, ok bool) {
	switch {
	case errors.Is(err, antientropy.ErrRingMismatch):
		return http.StatusConflict, "ring_mismatch", true
	case errors.Is(err, antientropy.ErrMigrating):
		return http.StatusConflict, "migrating", true
	case errors.Is(err, antientropy.ErrNoRing):
		return http.StatusConflict, "no_ring", true
	case errors.Is(err, antientropy.ErrUnknownPeer):
		return http.StatusBadRequest, "unknown_peer", true
	case errors.Is(err, antientropy.ErrBadBuckets):
		return http.StatusBadRequest, "invalid_buckets", true
	}
	return 0, "", false
}
