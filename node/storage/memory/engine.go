// Package memory is an in-memory storage.Engine for tests and demos
// (-storage=memory). It follows the same contract as the persistent engine,
// except that nothing survives the process.
package memory

import (
	"bytes"
	"cmp"
	"errors"
	"fmt"
	"hash/maphash"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/goblocks/goblocks/node/hlc"
	"github.com/goblocks/goblocks/node/ring"
	"github.com/goblocks/goblocks/node/storage"
)

// numShards spreads lock contention: concurrent writers on distinct ids
// rarely share a shard.
const numShards = 64

type shard struct {
	mu   sync.RWMutex
	recs map[string]storage.Record
}

// Engine is a storage.Engine kept in sharded maps. Records are copied in
// and out, so callers may reuse their slices. It is safe for concurrent use.
type Engine struct {
	seed   maphash.Seed
	shards [numShards]shard
	live   atomic.Int64
	closed atomic.Bool
}

var _ storage.Engine = (*Engine)(nil)

// New returns an empty engine.
func New() *Engine {
	e := &Engine{seed: maphash.MakeSeed()}
	for i := range e.shards {
		e.shards[i].recs = make(map[string]storage.Record)
	}
	return e
}

func (e *Engine) shardIndex(id string) int {
	return int(maphash.String(e.seed, id) % numShards)
}

func (e *Engine) shardOf(id string) *shard { return &e.shards[e.shardIndex(id)] }

// check reports ErrClosed. Close leaves the maps in place, so an operation
// that passed the check just before Close still finds valid state.
func (e *Engine) check() error {
	if e.closed.Load() {
		return storage.ErrClosed
	}
	return nil
}

// prepare validates an incoming record and copies its payload, so the
// caller's slice is never retained.
func prepare(rec storage.Record) (storage.Record, error) {
	if sum := storage.Checksum(rec.Data); sum != rec.Checksum {
		return rec, fmt.Errorf("memory: record checksum %08x, payload has %08x: %w", rec.Checksum, sum, storage.ErrCorrupt)
	}
	if rec.Version.Timestamp == 0 || rec.Version.Node == "" {
		return rec, fmt.Errorf("memory: version %q: %w", rec.Version, storage.ErrZeroVersion)
	}
	if len(rec.Version.Node) > hlc.MaxNodeLen {
		// The persistent engine cannot encode longer names; refuse them
		// here too so tests on either engine see the same behaviour.
		return rec, fmt.Errorf("memory: version node name is %d bytes, limit %d", len(rec.Version.Node), hlc.MaxNodeLen)
	}
	if rec.Tombstone {
		rec.Data, rec.Checksum = nil, storage.Checksum(nil)
	} else {
		rec.Data = bytes.Clone(rec.Data)
		if rec.Data == nil {
			rec.Data = []byte{}
		}
	}
	return rec, nil
}

func live(rec storage.Record, ok bool) int64 {
	if ok && !rec.Tombstone {
		return 1
	}
	return 0
}

// applyLocked stores rec if it supersedes the current record; the shard of
// id must be locked for writing.
func (e *Engine) applyLocked(s *shard, id string, rec storage.Record) bool {
	cur, ok := s.recs[id]
	if ok && !storage.Supersedes(rec.Meta(), cur.Meta()) {
		return false
	}
	s.recs[id] = rec
	e.live.Add(live(rec, true) - live(cur, ok))
	return true
}

// Get returns a copy of id's record.
func (e *Engine) Get(id string) (storage.Record, error) {
	if err := e.check(); err != nil {
		return storage.Record{}, err
	}
	s := e.shardOf(id)
	s.mu.RLock()
	rec, ok := s.recs[id]
	s.mu.RUnlock()
	if !ok {
		return storage.Record{}, fmt.Errorf("memory: block %q: %w", id, storage.ErrNotFound)
	}
	// Stored payloads are never mutated, only replaced, so copying outside
	// the lock is safe.
	if rec.Data != nil {
		rec.Data = bytes.Clone(rec.Data)
	}
	return rec, nil
}

// GetMetas answers each id as GetMeta does.
func (e *Engine) GetMetas(ids []string) []storage.MetaResult {
	out := make([]storage.MetaResult, len(ids))
	for i, id := range ids {
		out[i].Meta, out[i].Err = e.GetMeta(id)
	}
	return out
}

// GetMeta returns id's metadata.
func (e *Engine) GetMeta(id string) (storage.Meta, error) {
	if err := e.check(); err != nil {
		return storage.Meta{}, err
	}
	s := e.shardOf(id)
	s.mu.RLock()
	rec, ok := s.recs[id]
	s.mu.RUnlock()
	if !ok {
		return storage.Meta{}, fmt.Errorf("memory: block %q: %w", id, storage.ErrNotFound)
	}
	return rec.Meta(), nil
}

// Apply stores a copy of rec if it supersedes the stored record.
func (e *Engine) Apply(id string, rec storage.Record) (bool, error) {
	rec, err := prepare(rec)
	if err != nil {
		return false, err
	}
	if err := e.check(); err != nil {
		return false, err
	}
	s := e.shardOf(id)
	s.mu.Lock()
	defer s.mu.Unlock()
	return e.applyLocked(s, id, rec), nil
}

// ApplyBatch applies items atomically with respect to other operations. If
// any item fails validation nothing is applied.
func (e *Engine) ApplyBatch(items []storage.Item) ([]bool, error) {
	recs := make([]storage.Record, len(items))
	for i, it := range items {
		rec, err := prepare(it.Record)
		if err != nil {
			return nil, fmt.Errorf("memory: batch item %d (%q): %w", i, it.ID, err)
		}
		recs[i] = rec
	}
	if err := e.check(); err != nil {
		return nil, err
	}
	idx := make([]int, len(items))
	for i, it := range items {
		idx[i] = e.shardIndex(it.ID)
	}
	locks := slices.Clone(idx)
	slices.Sort(locks)
	locks = slices.Compact(locks)
	// Ascending order: two batches sharing shards cannot deadlock.
	for _, l := range locks {
		e.shards[l].mu.Lock()
	}
	defer func() {
		for _, l := range locks {
			e.shards[l].mu.Unlock()
		}
	}()
	applied := make([]bool, len(items))
	for i, it := range items {
		applied[i] = e.applyLocked(&e.shards[idx[i]], it.ID, recs[i])
	}
	return applied, nil
}

// MarkStale sets StaleSince on id's record if its version is still v.
func (e *Engine) MarkStale(id string, v hlc.Version, since time.Time) (bool, error) {
	if err := e.check(); err != nil {
		return false, err
	}
	s := e.shardOf(id)
	s.mu.Lock()
	defer s.mu.Unlock()
	rec, ok := s.recs[id]
	if !ok || rec.Version.Compare(v) != 0 {
		return false, nil
	}
	rec.StaleSince = since
	s.recs[id] = rec
	return true, nil
}

// Remove deletes id's record if its version is still v.
func (e *Engine) Remove(id string, v hlc.Version) (bool, error) {
	return e.remove(storage.Change{ID: id, Version: v, Remove: true})
}

// remove makes a removal Change: version, and stale mark when set, must
// still be those of the record.
func (e *Engine) remove(c storage.Change) (bool, error) {
	if err := e.check(); err != nil {
		return false, err
	}
	s := e.shardOf(c.ID)
	s.mu.Lock()
	defer s.mu.Unlock()
	id := c.ID
	rec, ok := s.recs[id]
	if !ok || rec.Version.Compare(c.Version) != 0 || !c.StaleSince.IsZero() && !rec.StaleSince.Equal(c.StaleSince) {
		return false, nil
	}
	delete(s.recs, id)
	e.live.Add(-live(rec, true))
	return true, nil
}

// ApplyChanges makes each change as MarkStale or Remove does.
func (e *Engine) ApplyChanges(changes []storage.Change) ([]bool, error) {
	done := make([]bool, len(changes))
	for i, c := range changes {
		var err error
		if c.Remove {
			done[i], err = e.remove(c)
		} else {
			done[i], err = e.MarkStale(c.ID, c.Version, c.StaleSince)
		}
		if err != nil {
			return nil, err
		}
	}
	return done, nil
}

// Scan calls fn with each record's metadata in ascending id order after
// `after`. It snapshots and sorts the matching metadata first (O(n log n)
// per call, acceptable for the engine's purpose), so fn runs with no lock
// held and may call the engine.
func (e *Engine) Scan(after string, fn func(id string, m storage.Meta) bool) error {
	return e.scan(fn, func(id string) (uint64, bool) { return 0, after == "" || id > after })
}

// ScanRange calls fn for the records whose ring position lies in r,
// clockwise from r.Start (then by id). The maps have no order, so it
// reads every record; the contract is what the tests check.
func (e *Engine) ScanRange(r ring.Range, fn func(id string, m storage.Meta) bool) error {
	return e.scan(fn, func(id string) (uint64, bool) {
		p := ring.Position(id)
		return p - r.Start - 1, r.Contains(p) // clockwise distance from r.Start
	})
}

// scan calls fn for the records keep accepts, in order of the key it
// gives them, then of id.
func (e *Engine) scan(fn func(id string, m storage.Meta) bool, keep func(id string) (uint64, bool)) error {
	if err := e.check(); err != nil {
		return err
	}
	type entry struct {
		key uint64
		id  string
		m   storage.Meta
	}
	var all []entry
	for i := range e.shards {
		s := &e.shards[i]
		s.mu.RLock()
		for id, rec := range s.recs {
			if k, ok := keep(id); ok {
				all = append(all, entry{k, id, rec.Meta()})
			}
		}
		s.mu.RUnlock()
	}
	slices.SortFunc(all, func(a, b entry) int {
		return cmp.Or(cmp.Compare(a.key, b.key), strings.Compare(a.id, b.id))
	})
	for _, en := range all {
		if !fn(en.id, en.m) {
			return nil
		}
	}
	return nil
}

// ScanRecords is ScanRange with a Get of each record.
func (e *Engine) ScanRecords(r ring.Range, fn func(id string, rec storage.Record, err error) bool) error {
	return e.ScanRange(r, func(id string, _ storage.Meta) bool {
		rec, err := e.Get(id)
		if errors.Is(err, storage.ErrNotFound) {
			return true // removed since the listing
		}
		return fn(id, rec, err)
	})
}

// Count returns the number of non-tombstone records.
func (e *Engine) Count() int64 { return e.live.Load() }

// Close marks the engine closed; the second and later calls return
// storage.ErrClosed.
func (e *Engine) Close() error {
	if !e.closed.CompareAndSwap(false, true) {
		return storage.ErrClosed
	}
	return nil
}
