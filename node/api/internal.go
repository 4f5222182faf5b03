package api

import (
	"fmt"
	"net/http"
	"strconv"

	"github.com/goblocks/goblocks/node/hlc"
	"github.com/goblocks/goblocks/node/storage"
	"github.com/goblocks/goblocks/node/wire"
)

// internalPut stores a replica copy sent by a coordinator, if it is newer
// than the local one. The version comes from the coordinator, never from
// this node, so the write is idempotent.
func (s *server) internalPut(w http.ResponseWriter, r *http.Request) {
	s.o.Metrics.InternalPut.Inc()
	id, err := s.blockID(r)
	if err != nil {
		s.fail(w, r, "internalput", err)
		return
	}
	meta, err := wire.ParseRecordHeaders(r.Header)
	if err != nil {
		s.fail(w, r, "internalput", err)
		return
	}
	if meta.Tombstone {
		s.fail(w, r, "internalput", fmt.Errorf("%w: tombstones are sent with DELETE", ErrUnexpectedRequest))
		return
	}
	data, err := readBlock(r, s.o.BlockSize)
	if err != nil {
		s.fail(w, r, "internalput", err)
		return
	}
	if storage.Checksum(data) != meta.Checksum {
		s.fail(w, r, "internalput", fmt.Errorf("%w: block %q", ErrChecksumMismatch, id))
		return
	}
	// A copy sent here is one this node is asked to own, whatever state
	// it had at the sender.
	s.applyLocal(w, r, "internalput", id, storage.Record{Data: data, Version: meta.Version, Checksum: meta.Checksum})
}

func (s *server) internalDelete(w http.ResponseWriter, r *http.Request) {
	s.o.Metrics.InternalDelete.Inc()
	id, err := s.blockID(r)
	if err != nil {
		s.fail(w, r, "internaldelete", err)
		return
	}
	meta, err := wire.ParseRecordHeaders(r.Header)
	if err != nil {
		s.fail(w, r, "internaldelete", err)
		return
	}
	if r.ContentLength > 0 {
		s.fail(w, r, "internaldelete", fmt.Errorf("%w: DELETE carries no body", ErrUnexpectedRequest))
		return
	}
	s.applyLocal(w, r, "internaldelete", id, storage.NewTombstone(meta.Version))
}

func (s *server) applyLocal(w http.ResponseWriter, r *http.Request, op, id string, rec storage.Record) {
	if err := s.guard.admit(r, rec.Version); err != nil {
		s.fail(w, r, op, err)
		return
	}
	applied, err := s.o.Local.Apply(id, rec)
	if err != nil {
		s.fail(w, r, op, err)
		return
	}
	w.Header().Set(wire.HeaderApplied, strconv.FormatBool(applied))
	if !applied {
		w.Header().Set(wire.HeaderHeld, s.heldVersion(id).String())
	}
	w.WriteHeader(http.StatusNoContent)
}

// heldVersion is the version this node holds of id after refusing an
// older or equal one: the coordinator re-stamps its write above it. A
// copy that cannot be read reports the zero version (the coordinator then
// counts the replica as failed, never as holding its write).
func (s *server) heldVersion(id string) hlc.Version {
	m, err := s.o.Local.GetMeta(id)
	if err != nil {
		return hlc.Version{}
	}
	return m.Version
}

// internalGet returns this node's own copy with its version and state, with
// no forwarding: it is how coordinators read replicas and how tests and
// operators check placement.
func (s *server) internalGet(w http.ResponseWriter, r *http.Request) {
	id, err := s.blockID(r)
	if err != nil {
		s.fail(w, r, "internalget", err)
		return
	}
	var rec storage.Record
	if r.Method == http.MethodHead {
		var meta storage.Meta
		meta, err = s.o.Local.GetMeta(id)
		rec = storage.Record{Version: meta.Version, Checksum: meta.Checksum, Tombstone: meta.Tombstone, StaleSince: meta.StaleSince}
	} else {
		rec, err = s.o.Local.Get(id)
	}
	if err != nil {
		s.fail(w, r, "internalget", err)
		return
	}
	h := w.Header()
	wire.SetRecordHeaders(h, rec.Meta())
	h.Set("Content-Type", "application/octet-stream")
	h.Set("Content-Length", strconv.Itoa(len(rec.Data)))
	w.WriteHeader(http.StatusOK)
	if r.Method != http.MethodHead {
		_, _ = w.Write(rec.Data)
	}
}
