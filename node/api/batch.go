package api

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/goblocks/goblocks/node/storage"
	"github.com/goblocks/goblocks/node/wire"
)

// batchApply stores a stream of replica records with one durable commit:
// coordinators multiplex concurrent writes into one request per peer, and
// migrations stream their transfers through it.
func (s *server) batchApply(w http.ResponseWriter, r *http.Request) {
	limit := wire.MaxBatchBody(s.o.BlockSize)
	if r.ContentLength > limit {
		s.fail(w, r, "internalput", fmt.Errorf("%w: batch of %d bytes > %d", ErrTooLarge, r.ContentLength, limit))
		return
	}
	release, err := s.admitBatch(w, r, limit)
	if err != nil {
		s.fail(w, r, "internalput", err)
		return
	}
	defer release()
	// A buffer the size of the body (most batches are a few records), up
	// to 64 KiB for migration streams.
	bufSize := 64 << 10
	if r.ContentLength > 0 && r.ContentLength < int64(bufSize) {
		bufSize = int(r.ContentLength)
	}
	dec := wire.NewDecoder(bufio.NewReaderSize(io.LimitReader(r.Body, limit), bufSize), s.o.BlockSize)
	var items []storage.Item
	for {
		id, rec, err := dec.Decode()
		if errors.Is(err, io.EOF) {
			break
		}
		if err == nil && len(items) == wire.MaxBatch {
			err = fmt.Errorf("%w: more than %d records", ErrTooLarge, wire.MaxBatch)
		}
		if err == nil {
			err = ValidateID(id)
		}
		if err == nil && !rec.Tombstone && len(rec.Data) != s.o.BlockSize {
			err = fmt.Errorf("%w: record %q has %d bytes", ErrBadSize, id, len(rec.Data))
		}
		if err != nil {
			if errors.Is(err, storage.ErrCorrupt) {
				err = fmt.Errorf("%w: %w", ErrChecksumMismatch, err)
			}
			s.fail(w, r, "internalput", err)
			return
		}
		if err := s.guard.admit(r, rec.Version); err != nil {
			// The whole batch is refused: a sender whose clock runs ahead
			// must not get some of its records stored.
			s.fail(w, r, "internalput", err)
			return
		}
		items = append(items, storage.Item{ID: id, Record: rec})
	}
	// Each record is one replica operation, counted as the single-record
	// endpoints count it: tombstones are internal deletes.
	for _, it := range items {
		if it.Record.Tombstone {
			s.o.Metrics.InternalDelete.Inc()
		} else {
			s.o.Metrics.InternalPut.Inc()
		}
	}
	applied, err := s.o.Local.ApplyBatch(items)
	if err != nil {
		s.fail(w, r, "internalput", err)
		return
	}
	if s.o.OnTransferReceived != nil && r.Header.Get(wire.HeaderTransfer) != "" {
		var bytes int64
		for _, it := range items {
			bytes += int64(len(it.Record.Data))
		}
		s.o.OnTransferReceived(int64(len(items)), bytes)
	}
	out := make([]byte, 0, len(applied)*2)
	for i, ok := range applied {
		res := wire.ApplyResult{Applied: ok}
		if !ok {
			res.Held = s.heldVersion(items[i].ID)
		}
		out = wire.AppendApplyResult(out, res)
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	_, _ = w.Write(out)
}

// stalledBodyTimeout bounds how long a batch body may take to arrive: a
// batch is at most ~1 MiB, sent by a peer at full speed.
const stalledBodyTimeout = 5 * time.Second

// admitBatch reserves the body's bytes (its length, or the largest batch
// when unknown) against MaxInflightBatchBytes, or refuses the batch with
// 503 so that stalled or flooding senders cannot hold the node's memory.
func (s *server) admitBatch(w http.ResponseWriter, r *http.Request, limit int64) (func(), error) {
	if _, ok := fromStream(r.Context()); ok {
		return func() {}, nil // the stream reserved its frame before reading it
	}
	weight := limit
	if r.ContentLength > 0 {
		weight = r.ContentLength
	}
	if !s.batchBytes.TryAcquire(weight) {
		s.o.Metrics.BatchesRefused.Inc()
		return nil, fmt.Errorf("%w: %d MiB of internal batches are being read already", ErrOverloaded, s.o.MaxInflightBatchBytes>>20)
	}
	_ = http.NewResponseController(w).SetReadDeadline(time.Now().Add(stalledBodyTimeout))
	return func() { s.batchBytes.Release(weight) }, nil
}

// batchFetch returns this node's copies of a list of ids.
func (s *server) batchFetch(w http.ResponseWriter, r *http.Request) {
	ids, err := wire.DecodeIDs(r.Body, ValidateID)
	if err != nil {
		s.fail(w, r, "internalget", err)
		return
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	bw := bufio.NewWriterSize(w, 64<<10)
	enc := wire.NewEncoder(bw)
	for _, id := range ids {
		rec, err := s.o.Local.Get(id)
		switch {
		case err == nil:
			if err := bw.WriteByte(wire.FetchFound); err != nil {
				return
			}
			// enc shares bw (bufio reuses a large enough writer), so
			// status bytes and frames stay in order.
			if err := enc.Encode(id, rec); err != nil {
				return
			}
		case errors.Is(err, storage.ErrNotFound):
			_ = bw.WriteByte(wire.FetchAbsent)
		default:
			// Corrupt or unreadable: the coordinator repairs it.
			s.o.Logger.Warn().Err(err).Str("block_id", id).Msg("local copy unreadable")
			_ = bw.WriteByte(wire.FetchCorrupt)
		}
	}
	_ = bw.Flush()
}

// batchMeta answers the metadata of each id in order (wire.PathBatchMeta):
// the version query every write starts with, for many writes in one
// request and without reading payloads. With verify
// (wire.PathBatchDigest) each payload is read and checked first: the
// digest replies of reads, which must find a damaged copy.
func (s *server) batchMeta(verify bool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		ids, err := wire.DecodeIDs(r.Body, ValidateID)
		if err != nil {
			s.fail(w, r, "internalget", err)
			return
		}
		w.Header().Set("Content-Type", "application/octet-stream")
		var metas []storage.MetaResult
		if verify {
			metas = s.digests(ids)
		} else {
			metas = s.o.Local.GetMetas(ids)
		}
		out := make([]byte, 0, len(ids)*32)
		for i, m := range metas {
			switch {
			case m.Err == nil:
				out = wire.AppendMeta(append(out, wire.FetchFound), m.Meta)
			case errors.Is(m.Err, storage.ErrNotFound):
				out = append(out, wire.FetchAbsent)
			default:
				s.o.Logger.Warn().Err(m.Err).Str("block_id", ids[i]).Msg("local copy unreadable")
				out = append(out, wire.FetchCorrupt)
			}
		}
		_, _ = w.Write(out)
	}
}

// digests reads each id's whole record, whose payload is checked against
// its checksum on the way, and answers its metadata: digest replies.
func (s *server) digests(ids []string) []storage.MetaResult {
	out := make([]storage.MetaResult, len(ids))
	for i, id := range ids {
		rec, err := s.o.Local.Get(id)
		out[i] = storage.MetaResult{Meta: rec.Meta(), Err: err}
	}
	return out
}
