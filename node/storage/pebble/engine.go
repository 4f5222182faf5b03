// Package pebble is the persistent storage.Engine, built on CockroachDB's
// Pebble LSM.
//
// Each block is two keys written in one batch: m/<id> holds a small
// metadata value (see codec.go) and d/<id> the payload. Scans read only the
// m/ family, and nothing is indexed in memory per block, so node memory
// stays flat as the data grows.
//
// Every write commits with pebble.Sync. Pebble merges the WAL writes of
// concurrent committers into one fsync (group commit), so the engine must
// never serialize commits itself: the read-modify-write of apply-if-newer
// is guarded by lock stripes keyed by block id, and operations on different
// ids commit concurrently.
//
// Faults: a block that fails pebble's checksum is reported as
// storage.ErrCorrupt like a payload that fails ours, so read repair
// rewrites it; a fault pebble cannot survive (a failed WAL write) makes
// the engine refuse every operation with storage.ErrFailed instead of
// exiting the process; Health reports both (see health.go, logger.go).
package pebble

import (
	"bytes"
	"errors"
	"fmt"
	"hash/maphash"
	"io"
	"math"
	"runtime/debug"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	pebbledb "github.com/cockroachdb/pebble"
	dto "github.com/prometheus/client_model/go"

	"github.com/goblocks/goblocks/node/hlc"
	"github.com/goblocks/goblocks/node/ring"
	"github.com/goblocks/goblocks/node/storage"
)

// numStripes bounds write concurrency on distinct ids that collide: with
// 1024 stripes, 32 writers on random ids rarely share one.
const numStripes = 1024

// scanChunk is how many metadata entries Scan reads per iterator. Reading
// in chunks and calling fn with no iterator open means a slow consumer (a
// migration stream) never pins memtables and sstables for the whole scan,
// and fn may call back into the engine.
const scanChunk = 512

// Engine is a storage.Engine persisted in a Pebble database. It is safe
// for concurrent use.
type Engine struct {
	db     *pebbledb.DB
	logf   func(format string, args ...any)
	faults *faults
	// fsCloser stops pebble's disk-health monitor; Close calls it after
	// the DB has closed.
	fsCloser io.Closer
	// l0Stop is pebble's L0StopWritesThreshold (see admitWrite).
	l0Stop int

	// stripes serialize the read-modify-write of each id. Writers hold the
	// stripe exclusively across read and commit; Get holds it shared so it
	// reads m/ and d/ of the same write.
	seed    maphash.Seed
	stripes [numStripes]sync.RWMutex
	// metas caches recently used metadata, coherent under the stripes.
	metas metaCache

	// live is the number of non-tombstone records. It is only changed with
	// the stripe of the affected id held and after the commit succeeded,
	// so it never counts a write that did not happen.
	live atomic.Int64

	// gate admits every operation that uses db, so Close can wait for
	// them: pebble panics when used after it closed.
	gate *gate
	lay  layout
}

var (
	_ storage.Engine         = (*Engine)(nil)
	_ storage.HealthReporter = (*Engine)(nil)
)

// Open opens (creating if needed) the database in dir and counts its live
// records, which reads every metadata value once. A store pebble finds
// corrupt, or that has damage in the middle of its WAL or MANIFEST (which
// pebble itself would silently truncate, see recordlog.go), fails with an
// error wrapping storage.ErrCorrupt: it must be rebuilt from replicas.
// Open does not verify every table: damage in a payload block shows when
// the block is read.
func Open(dir string, opts Options) (*Engine, error) {
	opts.EnsureDefaults()
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	f := newFaults(opts.Logf, opts.Now)
	cache := pebbledb.NewCache(opts.CacheSize)
	// The DB takes its own reference; dropping ours lets Close free it.
	defer cache.Unref()
	po, fsCloser := opts.pebbleOptions(cache, f)
	db, err := pebbledb.Open(dir, po)
	if err != nil {
		_ = fsCloser.Close()
		return nil, fmt.Errorf("pebble: open %s: %w", dir, f.classify(err))
	}
	e := &Engine{
		db: db, logf: opts.Logf, faults: f, fsCloser: fsCloser,
		l0Stop: po.L0StopWritesThreshold, seed: maphash.MakeSeed(), gate: newGate(), lay: idLayout,
	}
	if opts.ByPosition {
		e.lay = positionLayout
	}
	if err = settleLayout(db, e.lay, opts.ReadOnly, opts.Logf); err != nil {
		err = f.classify(err)
	}
	// A Fatalf during open (a MANIFEST write that failed) leaves pebble
	// open but failed.
	var n int64
	if err == nil {
		n, err = e.countLive()
	}
	if err == nil {
		err = f.err()
	}
	if err != nil {
		_ = e.Close()
		return nil, fmt.Errorf("pebble: open %s: %w", dir, err)
	}
	e.live.Store(n)
	return e, nil
}

// countLive scans the m/ family. Undecodable values are logged and not
// counted, matching how Apply treats them (as absent).
func (e *Engine) countLive() (int64, error) {
	it, err := e.db.NewIter(&pebbledb.IterOptions{LowerBound: []byte(e.lay.meta), UpperBound: familyEnd(e.lay.meta)})
	if err != nil {
		return 0, e.faults.classify(err)
	}
	var n int64
	for ok := it.First(); ok; ok = it.Next() {
		m, err := decodeMeta(it.Value())
		if err != nil {
			e.logf("pebble: block %q: %v", e.lay.idOf(it.Key()), err)
			continue
		}
		if !m.Tombstone {
			n++
		}
	}
	if err := it.Error(); err != nil {
		_ = it.Close()
		return 0, e.faults.classify(err)
	}
	return n, e.faults.classify(it.Close())
}

// acquire admits an operation; release must follow when it returns nil.
// A failed engine admits nothing, reads included: pebble's memtable may
// hold the write whose WAL write failed, which a restart will not have.
func (e *Engine) acquire() error {
	if !e.gate.enter() {
		return storage.ErrClosed
	}
	if err := e.faults.err(); err != nil {
		e.gate.leave()
		return err
	}
	return nil
}

func (e *Engine) release() { e.gate.leave() }

// acquireWrite is acquire for an operation that commits.
func (e *Engine) acquireWrite() error {
	if err := e.acquire(); err != nil {
		return err
	}
	if err := e.admitWrite(); err != nil {
		e.release()
		return err
	}
	return nil
}

// admitWrite refuses a write that could stall forever. Once compactions
// are halted by corruption nothing drains level 0, and pebble blocks every
// commit once L0 reaches L0StopWritesThreshold sublevels (db.go:2454),
// with the caller holding its stripe lock. A flush adds at most one
// sublevel and one may be under way: hence the margin of two.
func (e *Engine) admitWrite() error {
	if !e.faults.halted.Load() {
		return nil
	}
	if l0 := int(e.db.Metrics().Levels[0].Sublevels); l0+2 >= e.l0Stop {
		return fmt.Errorf("pebble: compactions halted by corruption and level 0 has %d sublevels, writes would stall: %w", l0, storage.ErrFailed)
	}
	return nil
}

// commit commits b durably. Any commit whose outcome is not known to be
// durable returns an error:
//   - Pebble reports a failed WAL write through Logger.Fatalf and then
//     returns nil (db.go:857); logger.Fatalf records the failure, which the
//     check after Commit turns into the error. A failure in a concurrent
//     commit may so fail a commit that did reach the disk: that is
//     allowed, a write that returns an error may or may not have happened.
//   - Pebble panics on some WAL errors while holding its own mutexes
//     (db.go:965, db.go:2679): recover turns that into the engine's
//     failure and wedges the gate, so Close does not wait on pebble.
func (e *Engine) commit(b *pebbledb.Batch) error { return e.commitWith(b, pebbledb.Sync) }

// commitUnsynced commits b without waiting for a WAL fsync: for changes
// that may be lost in a crash because the garbage-collection pass that
// made them makes them again (stale marks, collected copies, delivered
// hints). The next synced commit makes them durable too: the WAL is one
// ordered log.
func (e *Engine) commitUnsynced(b *pebbledb.Batch) error { return e.commitWith(b, pebbledb.NoSync) }

func (e *Engine) commitWith(b *pebbledb.Batch, opts *pebbledb.WriteOptions) (err error) {
	// checkedFS may have seen the WAL fail already: stay out of pebble.
	if err := e.faults.err(); err != nil {
		return err
	}
	defer func() {
		if r := recover(); r != nil {
			e.faults.limit.logf(e.logf, "panic", "pebble: panic in commit: %v\n%s", r, debug.Stack())
			e.faults.fail(fmt.Errorf("pebble panicked in commit: %v", r))
			e.gate.wedge()
			err = e.faults.err()
		}
	}()
	if err := b.Commit(opts); err != nil {
		return e.faults.classify(err)
	}
	return e.faults.err()
}

func (e *Engine) stripeOf(id string) int {
	return int(maphash.String(e.seed, id) % numStripes)
}

// stored is what a read-modify-write knows of the current record of an id.
type stored struct {
	found bool         // an m/ key exists
	bad   error        // why it cannot be read (wraps storage.ErrCorrupt), or nil
	meta  storage.Meta // valid when found && bad == nil
	// staged marks state produced earlier in the same batch, not yet on
	// disk: its payload is known intact.
	staged bool
}

func (s stored) live() bool { return s.found && s.bad == nil && !s.meta.Tombstone }

func boolInt(b bool) int64 {
	if b {
		return 1
	}
	return 0
}

// lookup is readStored through the metadata cache; the caller holds id's
// stripe (shared or exclusive), so a fill cannot race a commit.
func (e *Engine) lookup(stripe int, id string) (stored, error) {
	if m, ok := e.metas.get(stripe, id); ok {
		return stored{found: true, meta: m}, nil
	}
	return e.readAndCache(stripe, id)
}

// readAndCache is readStored for a cache miss: a readable record it finds
// is cached. The caller holds id's stripe.
func (e *Engine) readAndCache(stripe int, id string) (stored, error) {
	cur, err := e.readStored(id)
	if err == nil && cur.found && cur.bad == nil {
		e.metas.put(stripe, id, cur.meta)
	}
	return cur, err
}

// seekLookups is the number of cache misses from which lookupMany reads
// them with one iterator rather than a point read each: a point read
// builds an iterator over every level for one key (bloom filters make its
// misses cheap), while one iterator seeking keys in order walks the
// blocks they share once. Migrations ask for whole batches of an arc.
const seekLookups = 16

// lookupMany is lookup for many ids, whose stripes the caller holds
// (shared or exclusive). Ids may repeat.
func (e *Engine) lookupMany(ids []string) ([]stored, error) {
	out := make([]stored, len(ids))
	var misses []int
	for i, id := range ids {
		if m, ok := e.metas.get(e.stripeOf(id), id); ok {
			out[i] = stored{found: true, meta: m}
			continue
		}
		misses = append(misses, i)
	}
	if len(misses) < seekLookups {
		return out, e.readMisses(ids, misses, out)
	}
	keys := make([][]byte, len(ids))
	for _, i := range misses {
		keys[i] = e.lay.metaKey(ids[i])
	}
	slices.SortFunc(misses, func(a, b int) int { return bytes.Compare(keys[a], keys[b]) })
	last := keys[misses[len(misses)-1]]
	it, err := e.db.NewIter(&pebbledb.IterOptions{LowerBound: keys[misses[0]], UpperBound: append(slices.Clip(last), 0)})
	if err != nil {
		return nil, fmt.Errorf("pebble: read metadata: %w", e.faults.classify(err))
	}
	read := 0
	for _, i := range misses {
		if !it.SeekGE(keys[i]) || !bytes.Equal(it.Key(), keys[i]) {
			if it.Error() != nil {
				break // the rest by point reads, which classify the damage per block
			}
			read++ // no record
			continue
		}
		v, verr := it.ValueAndErr()
		if verr != nil {
			break
		}
		m, derr := decodeMeta(v)
		if derr != nil {
			out[i] = stored{found: true, bad: fmt.Errorf("pebble: block %q metadata undecodable: %v: %w", ids[i], derr, storage.ErrCorrupt)}
		} else {
			out[i] = stored{found: true, meta: m}
			e.metas.put(e.stripeOf(ids[i]), ids[i], m)
		}
		read++
	}
	_ = it.Close() // an error here was the iterator's, handled below
	return out, e.readMisses(ids, misses[read:], out)
}

// readMisses fills out[i] for each i of misses with a point read.
func (e *Engine) readMisses(ids []string, misses []int, out []stored) error {
	for _, i := range misses {
		var err error
		if out[i], err = e.readAndCache(e.stripeOf(ids[i]), ids[i]); err != nil {
			return err
		}
	}
	return nil
}

// remember records in the cache what a commit left for id (nothing when
// it was not committed or its state is unknown); the caller holds id's
// stripe exclusively.
func (e *Engine) remember(stripe int, id string, st stored, committed bool) {
	if committed && st.found && st.bad == nil {
		e.metas.put(stripe, id, st.meta)
		return
	}
	e.metas.drop(stripe, id)
}

// readStored reads the m/ key of id. A value that does not decode and a
// block that fails pebble's checksum are both reported as bad, not as
// errors: readers return ErrCorrupt, and Apply treats the record as absent
// so repair can overwrite it.
//
// Live may count one too many after such a repair: the record behind the
// corrupt block may have been counted at Open. Undecodable values were not.
func (e *Engine) readStored(id string) (stored, error) {
	v, closer, err := e.db.Get(e.lay.metaKey(id))
	if errors.Is(err, pebbledb.ErrNotFound) {
		return stored{}, nil
	}
	if err != nil {
		err = fmt.Errorf("pebble: read metadata of %q: %w", id, e.faults.classify(err))
		if errors.Is(err, storage.ErrCorrupt) {
			return stored{found: true, bad: err}, nil
		}
		return stored{}, err
	}
	defer closer.Close()
	m, err := decodeMeta(v)
	if err != nil {
		return stored{found: true, bad: fmt.Errorf("pebble: block %q metadata undecodable: %v: %w", id, err, storage.ErrCorrupt)}, nil
	}
	return stored{found: true, meta: m}, nil
}

// readPayload returns a copy of id's payload after checking it against m.
func (e *Engine) readPayload(id string, m storage.Meta) ([]byte, error) {
	v, closer, err := e.db.Get(e.lay.dataKey(id))
	if errors.Is(err, pebbledb.ErrNotFound) {
		return nil, fmt.Errorf("pebble: block %q has metadata but no payload: %w", id, storage.ErrCorrupt)
	}
	if err != nil {
		return nil, fmt.Errorf("pebble: read payload of %q: %w", id, e.faults.classify(err))
	}
	defer closer.Close()
	return checkedCopy(id, v, m)
}

// checkedCopy returns a copy of payload v of id if it matches m's size
// and checksum, else an error wrapping storage.ErrCorrupt.
func checkedCopy(id string, v []byte, m storage.Meta) ([]byte, error) {
	if len(v) != m.Size {
		return nil, fmt.Errorf("pebble: block %q payload is %d bytes, metadata says %d: %w", id, len(v), m.Size, storage.ErrCorrupt)
	}
	if sum := storage.Checksum(v); sum != m.Checksum {
		return nil, fmt.Errorf("pebble: block %q checksum %08x, metadata says %08x: %w", id, sum, m.Checksum, storage.ErrCorrupt)
	}
	return bytes.Clone(v), nil
}

// prepare validates an incoming record before any lock is taken.
func prepare(rec storage.Record) (storage.Record, error) {
	if sum := storage.Checksum(rec.Data); sum != rec.Checksum {
		return rec, fmt.Errorf("pebble: record checksum %08x, payload has %08x: %w", rec.Checksum, sum, storage.ErrCorrupt)
	}
	if rec.Version.Timestamp == 0 || rec.Version.Node == "" {
		return rec, fmt.Errorf("pebble: version %q: %w", rec.Version, storage.ErrZeroVersion)
	}
	if len(rec.Version.Node) > hlc.MaxNodeLen {
		return rec, fmt.Errorf("pebble: version node name is %d bytes, limit %d", len(rec.Version.Node), hlc.MaxNodeLen)
	}
	if len(rec.Data) > math.MaxUint32 {
		return rec, fmt.Errorf("pebble: payload of %d bytes is too large", len(rec.Data))
	}
	if rec.Tombstone {
		// A tombstone has no payload; storing one would only waste space.
		rec.Data, rec.Checksum = nil, storage.Checksum(nil)
	}
	return rec, nil
}

// stage adds the writes for rec to b if rec must replace cur, and returns
// the resulting state. The stripe of id must be held.
func (e *Engine) stage(b *pebbledb.Batch, id string, rec storage.Record, cur stored) (bool, stored, error) {
	in := rec.Meta()
	if cur.found && cur.bad == nil && !storage.Supersedes(in, cur.meta) {
		if cur.staged || in.Tombstone || cur.meta.Tombstone || in.Version.Compare(cur.meta.Version) != 0 {
			return false, cur, nil
		}
		// A re-delivery of the stored version. If our copy of it is corrupt,
		// take the good one: this is how read repair heals a replica without
		// a newer write.
		_, err := e.readPayload(id, cur.meta)
		if !errors.Is(err, storage.ErrCorrupt) {
			return false, cur, err
		}
		e.logf("pebble: replacing corrupt copy of %q at version %s", id, in.Version)
	}
	mv, err := encodeMeta(nil, in)
	if err != nil {
		return false, cur, err
	}
	if err := b.Set(e.lay.metaKey(id), mv, nil); err != nil {
		return false, cur, err
	}
	switch {
	case !in.Tombstone:
		err = b.Set(e.lay.dataKey(id), rec.Data, nil)
	case cur.found && (cur.bad != nil || !cur.meta.Tombstone):
		err = b.Delete(e.lay.dataKey(id), nil)
	}
	if err != nil {
		return false, cur, err
	}
	// What a read would decode, so the cache holds exactly that.
	canon, err := decodeMeta(mv)
	if err != nil {
		return false, cur, err
	}
	return true, stored{found: true, meta: canon, staged: true}, nil
}

// Get returns id's record, verifying the payload against its checksum.
func (e *Engine) Get(id string) (storage.Record, error) {
	if err := e.acquire(); err != nil {
		return storage.Record{}, err
	}
	defer e.release()
	// Shared stripe lock: m/ and d/ are read as two gets, and a writer
	// committing between them would pair one version's metadata with
	// another's payload.
	stripe := e.stripeOf(id)
	mu := &e.stripes[stripe]
	mu.RLock()
	defer mu.RUnlock()
	cur, err := e.lookup(stripe, id)
	switch {
	case err != nil:
		return storage.Record{}, err
	case !cur.found:
		return storage.Record{}, fmt.Errorf("pebble: block %q: %w", id, storage.ErrNotFound)
	case cur.bad != nil:
		return storage.Record{}, cur.bad
	}
	m := cur.meta
	rec := storage.Record{Version: m.Version, Checksum: m.Checksum, Tombstone: m.Tombstone, StaleSince: m.StaleSince}
	if m.Tombstone {
		return rec, nil
	}
	if rec.Data, err = e.readPayload(id, m); err != nil {
		return storage.Record{}, err
	}
	return rec, nil
}

// GetMetas answers each id as GetMeta does, reading the misses of the
// metadata cache in key order in one pass when there are many.
func (e *Engine) GetMetas(ids []string) []storage.MetaResult {
	out := make([]storage.MetaResult, len(ids))
	if err := e.acquire(); err != nil {
		for i := range out {
			out[i].Err = err
		}
		return out
	}
	defer e.release()
	unlock := e.lockStripesShared(ids)
	curs, err := e.lookupMany(ids)
	unlock()
	for i, id := range ids {
		switch cur := curs[i]; {
		case err != nil:
			out[i].Err = err
		case !cur.found:
			out[i].Err = fmt.Errorf("pebble: block %q: %w", id, storage.ErrNotFound)
		case cur.bad != nil:
			out[i].Err = cur.bad
		default:
			out[i].Meta = cur.meta
		}
	}
	return out
}

// GetMeta returns id's metadata without reading its payload.
func (e *Engine) GetMeta(id string) (storage.Meta, error) {
	if err := e.acquire(); err != nil {
		return storage.Meta{}, err
	}
	defer e.release()
	stripe := e.stripeOf(id)
	if m, ok := e.metas.get(stripe, id); ok {
		return m, nil
	}
	mu := &e.stripes[stripe]
	mu.RLock()
	cur, err := e.readAndCache(stripe, id)
	mu.RUnlock()
	switch {
	case err != nil:
		return storage.Meta{}, err
	case !cur.found:
		return storage.Meta{}, fmt.Errorf("pebble: block %q: %w", id, storage.ErrNotFound)
	case cur.bad != nil:
		return storage.Meta{}, cur.bad
	}
	return cur.meta, nil
}

// Apply stores rec if it supersedes the stored record. Beyond the
// storage.Engine contract, a stored record whose metadata does not decode
// or fails pebble's block checksum counts as absent, and one whose payload
// fails either checksum is replaced by a valid copy of the same version,
// so repair can overwrite it.
func (e *Engine) Apply(id string, rec storage.Record) (bool, error) {
	rec, err := prepare(rec)
	if err != nil {
		return false, err
	}
	if err := e.acquireWrite(); err != nil {
		return false, err
	}
	defer e.release()
	stripe := e.stripeOf(id)
	mu := &e.stripes[stripe]
	mu.Lock()
	defer mu.Unlock()

	cur, err := e.lookup(stripe, id)
	if err != nil {
		return false, err
	}
	b := e.db.NewBatch()
	defer b.Close()
	ok, next, err := e.stage(b, id, rec, cur)
	if err != nil || !ok {
		return false, err
	}
	err = e.commit(b)
	e.remember(stripe, id, next, err == nil)
	if err != nil {
		return false, fmt.Errorf("pebble: commit %q: %w", id, err)
	}
	e.live.Add(boolInt(next.live()) - boolInt(cur.live()))
	return true, nil
}

// ApplyBatch applies items with one synced commit. If any item fails
// validation (a checksum mismatch wraps storage.ErrCorrupt) nothing is
// applied. Items with the same id are applied in order, each against the
// outcome of the previous one.
func (e *Engine) ApplyBatch(items []storage.Item) ([]bool, error) {
	recs := make([]storage.Record, len(items))
	for i, it := range items {
		rec, err := prepare(it.Record)
		if err != nil {
			return nil, fmt.Errorf("pebble: batch item %d (%q): %w", i, it.ID, err)
		}
		recs[i] = rec
	}
	applied := make([]bool, len(items))
	if len(items) == 0 {
		return applied, nil
	}
	if err := e.acquireWrite(); err != nil {
		return nil, err
	}
	defer e.release()
	ids := make([]string, len(items))
	for i, it := range items {
		ids[i] = it.ID
	}
	unlock := e.lockStripes(ids)
	defer unlock()

	before, err := e.lookupMany(ids)
	if err != nil {
		return nil, err
	}
	b := e.db.NewBatch()
	defer b.Close()
	state := make(map[string]stored, len(items))
	var delta int64
	for i, it := range items {
		cur, seen := state[it.ID]
		if !seen {
			cur = before[i]
		}
		ok, next, err := e.stage(b, it.ID, recs[i], cur)
		if err != nil {
			return nil, err
		}
		if ok {
			delta += boolInt(next.live()) - boolInt(cur.live())
			applied[i] = true
		}
		state[it.ID] = next
	}
	if b.Empty() {
		return applied, nil
	}
	err = e.commit(b)
	for id, st := range state {
		e.remember(e.stripeOf(id), id, st, err == nil)
	}
	if err != nil {
		return nil, fmt.Errorf("pebble: commit batch of %d: %w", len(items), err)
	}
	e.live.Add(delta)
	return applied, nil
}

// stripesOf returns the distinct stripes of ids in ascending order, the
// order in which every multi-stripe lock takes them: two batches sharing
// stripes cannot deadlock.
func (e *Engine) stripesOf(ids []string) []int {
	idx := make([]int, len(ids))
	for i, id := range ids {
		idx[i] = e.stripeOf(id)
	}
	slices.Sort(idx)
	return slices.Compact(idx)
}

// lockStripes takes the stripes of all ids exclusively and returns the
// unlock.
func (e *Engine) lockStripes(ids []string) func() {
	idx := e.stripesOf(ids)
	for _, s := range idx {
		e.stripes[s].Lock()
	}
	return func() {
		for _, s := range idx {
			e.stripes[s].Unlock()
		}
	}
}

// lockStripesShared is lockStripes with shared locks (readers).
func (e *Engine) lockStripesShared(ids []string) func() {
	idx := e.stripesOf(ids)
	for _, s := range idx {
		e.stripes[s].RLock()
	}
	return func() {
		for _, s := range idx {
			e.stripes[s].RUnlock()
		}
	}
}

// MarkStale sets StaleSince on id's record if its version is still v. It
// reports false, without error, if no record exists or its version differs.
// Only the metadata is rewritten.
func (e *Engine) MarkStale(id string, v hlc.Version, since time.Time) (bool, error) {
	if err := e.acquireWrite(); err != nil {
		return false, err
	}
	defer e.release()
	mu := &e.stripes[e.stripeOf(id)]
	mu.Lock()
	defer mu.Unlock()

	done, err := e.changeLocked([]storage.Change{{ID: id, Version: v, StaleSince: since}})
	if err != nil {
		return false, err
	}
	return done[0], nil
}

// ApplyChanges makes the changes with one unsynced commit (see MarkStale
// and Remove for why unsynced is enough).
func (e *Engine) ApplyChanges(changes []storage.Change) ([]bool, error) {
	if len(changes) == 0 {
		return nil, nil
	}
	if err := e.acquireWrite(); err != nil {
		return nil, err
	}
	defer e.release()
	ids := make([]string, len(changes))
	for i, c := range changes {
		ids[i] = c.ID
	}
	unlock := e.lockStripes(ids)
	defer unlock()
	return e.changeLocked(changes)
}

// changeLocked stages and commits changes; the caller holds their stripes.
// An id may appear once.
func (e *Engine) changeLocked(changes []storage.Change) ([]bool, error) {
	done := make([]bool, len(changes))
	b := e.db.NewBatch()
	defer b.Close()
	var delta int64
	ids := make([]string, len(changes))
	for i, c := range changes {
		ids[i] = c.ID
	}
	// A GC pass changes an arc's records, in key order: one ordered pass
	// reads what they are now.
	curs, err := e.lookupMany(ids)
	if err != nil {
		return nil, err
	}
	after := make([]stored, len(changes)) // what each done change leaves
	for i, c := range changes {
		cur := curs[i]
		after[i] = cur
		switch {
		case !cur.found:
			continue
		case cur.bad != nil:
			return nil, fmt.Errorf("pebble: change %q: %w", c.ID, cur.bad)
		case cur.meta.Version.Compare(c.Version) != 0:
			continue
		case c.Remove && !c.StaleSince.IsZero() && staleNanos(cur.meta.StaleSince) != staleNanos(c.StaleSince):
			continue // owned again, or marked anew, since the removal was decided
		case c.Remove:
			if err := b.Delete(e.lay.metaKey(c.ID), nil); err != nil {
				return nil, err
			}
			if !cur.meta.Tombstone {
				if err := b.Delete(e.lay.dataKey(c.ID), nil); err != nil {
					return nil, err
				}
			}
			delta -= boolInt(cur.live())
			after[i] = stored{}
		case staleNanos(cur.meta.StaleSince) == staleNanos(c.StaleSince):
			// Already so: nothing to write.
		default:
			m := cur.meta
			m.StaleSince = c.StaleSince
			mv, err := encodeMeta(nil, m)
			if err != nil {
				return nil, err
			}
			if err := b.Set(e.lay.metaKey(c.ID), mv, nil); err != nil {
				return nil, err
			}
			if after[i].meta, err = decodeMeta(mv); err != nil {
				return nil, err
			}
		}
		done[i] = true
	}
	if b.Empty() {
		return done, nil
	}
	err = e.commitUnsynced(b)
	for i, c := range changes {
		if done[i] {
			e.remember(e.stripeOf(c.ID), c.ID, after[i], err == nil)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("pebble: commit %d changes: %w", len(changes), err)
	}
	e.live.Add(delta)
	return done, nil
}

// Remove deletes id's record if its version is still v. It reports false,
// without error, if no record exists or its version differs.
func (e *Engine) Remove(id string, v hlc.Version) (bool, error) {
	if err := e.acquireWrite(); err != nil {
		return false, err
	}
	defer e.release()
	mu := &e.stripes[e.stripeOf(id)]
	mu.Lock()
	defer mu.Unlock()

	done, err := e.changeLocked([]storage.Change{{ID: id, Version: v, Remove: true}})
	if err != nil {
		return false, err
	}
	return done[0], nil
}

// Scan calls fn with the metadata of each record in key order (see
// storage.Engine), starting after `after`. It reads only the meta family.
// fn runs with no lock or iterator held and may call the engine. Values
// that do not decode are logged and skipped, so one bad record cannot
// halt migration or anti-entropy (which then re-send it, and Apply
// replaces it). A block of the meta family that fails pebble's checksum
// cannot be skipped: the scan stops with an error wrapping
// storage.ErrCorrupt.
func (e *Engine) Scan(after string, fn func(id string, m storage.Meta) bool) error {
	lower := []byte(e.lay.meta)
	if after != "" {
		// The least key greater than after's.
		lower = append(e.lay.metaKey(after), 0)
	}
	return e.scan(lower, familyEnd(e.lay.meta), fn)
}

// ScanRange calls fn for the records in arc r, reading only its keys (the
// position layout); as Scan otherwise.
func (e *Engine) ScanRange(r ring.Range, fn func(id string, m storage.Meta) bool) error {
	if !e.lay.byPosition {
		return storage.ErrUnordered
	}
	stopped := false
	for _, b := range e.lay.arcBounds(r) {
		err := e.scan(b[0], b[1], func(id string, m storage.Meta) bool {
			stopped = !fn(id, m)
			return !stopped
		})
		if err != nil || stopped {
			return err
		}
	}
	return nil
}

// scan calls fn for the meta keys in [lower, upper), a chunk at a time.
func (e *Engine) scan(lower, upper []byte, fn func(id string, m storage.Meta) bool) error {
	type entry struct {
		id string
		m  storage.Meta
	}
	buf := make([]entry, 0, scanChunk)
	for {
		buf = buf[:0]
		more, err := e.scanChunk(lower, upper, func(id string, m storage.Meta) {
			buf = append(buf, entry{id, m})
		})
		if err != nil {
			return err
		}
		for _, en := range buf {
			if !fn(en.id, en.m) {
				return nil
			}
		}
		if !more {
			return nil
		}
		lower = append(e.lay.metaKey(buf[len(buf)-1].id), 0)
	}
}

// scanChunk reads up to scanChunk decodable entries from lower on, and
// reports whether the family may hold more.
func (e *Engine) scanChunk(lower, upper []byte, add func(id string, m storage.Meta)) (bool, error) {
	if err := e.acquire(); err != nil {
		return false, err
	}
	defer e.release()
	it, err := e.db.NewIter(&pebbledb.IterOptions{LowerBound: lower, UpperBound: upper})
	if err != nil {
		return false, fmt.Errorf("pebble: scan: %w", e.faults.classify(err))
	}
	n := 0
	ok := it.First()
	for ; ok && n < scanChunk; ok = it.Next() {
		id := e.lay.idOf(it.Key())
		m, err := decodeMeta(it.Value())
		if err != nil {
			e.logf("pebble: scan: skipping block %q: %v", id, err)
			continue
		}
		add(id, m)
		n++
	}
	if err := it.Error(); err != nil {
		_ = it.Close()
		return false, fmt.Errorf("pebble: scan: %w", e.faults.classify(err))
	}
	if err := it.Close(); err != nil {
		return false, fmt.Errorf("pebble: scan: %w", e.faults.classify(err))
	}
	return ok, nil
}

// Count returns the number of non-tombstone records.
func (e *Engine) Count() int64 { return e.live.Load() }

// Close closes the database after in-flight operations finish. Later calls
// of any method return storage.ErrClosed. Health still works.
//
// If pebble wedged on a failed WAL write (see gate), Close returns at once
// with an error wrapping storage.ErrFailed and leaves the store open: the
// files, the directory lock and pebble's goroutines stay held until the
// process exits, and only a restart can reopen the store.
func (e *Engine) Close() error {
	first, wedged := e.gate.close()
	switch {
	case !first:
		return storage.ErrClosed
	case wedged:
		return fmt.Errorf("pebble: close: pebble is wedged, the store stays open until the process exits: %w", e.faults.err())
	}
	err := e.db.Close()
	_ = e.fsCloser.Close()
	if err != nil {
		return fmt.Errorf("pebble: close: %w", err)
	}
	return nil
}

// Health reports the faults the engine has seen since Open. It never
// blocks on I/O and works after Close.
func (e *Engine) Health() storage.Health { return e.faults.snapshot() }

// Flush writes the memtable to tables, so that the store's files alone
// (without the WAL) hold every write: before copying the directory for a
// backup, or to make a test's corruption reach tables.
func (e *Engine) Flush() error {
	if err := e.acquire(); err != nil {
		return err
	}
	defer e.release()
	if err := e.db.Flush(); err != nil {
		return fmt.Errorf("pebble: flush: %w", err)
	}
	return nil
}

// WALSyncs returns how many WAL fsyncs pebble has done since Open. Writes
// divided by syncs is how many commits each fsync carried (group commit).
func (e *Engine) WALSyncs() uint64 {
	var m dto.Metric
	if err := e.db.Metrics().LogWriter.FsyncLatency.Write(&m); err != nil {
		return 0
	}
	return m.GetHistogram().GetSampleCount()
}

// recordChunk is how many records ScanRecords reads per snapshot (about
// 1 MiB of payloads held at once).
const recordChunk = 256

// scannedRecord is one entry of a ScanRecords chunk.
type scannedRecord struct {
	id  string
	rec storage.Record
	err error
}

// ScanRecords calls fn with each record of arc r, payload included. Meta
// and payload come from one snapshot (no stripe lock needed to pair
// them), read with two iterators moving forward together: the payloads of
// an arc are one run of keys, so there is no point read per block.
func (e *Engine) ScanRecords(r ring.Range, fn func(id string, rec storage.Record, err error) bool) error {
	if !e.lay.byPosition {
		return storage.ErrUnordered
	}
	for _, b := range e.lay.arcBounds(r) {
		lower := b[0]
		for {
			recs, more, err := e.recordChunk(lower, b[1])
			if err != nil {
				return err
			}
			for _, x := range recs {
				if !fn(x.id, x.rec, x.err) {
					return nil
				}
			}
			if !more || len(recs) == 0 {
				break
			}
			lower = append(e.lay.metaKey(recs[len(recs)-1].id), 0)
		}
	}
	return nil
}

func (e *Engine) recordChunk(lower, upper []byte) (out []scannedRecord, more bool, err error) {
	if err := e.acquire(); err != nil {
		return nil, false, err
	}
	defer e.release()
	snap := e.db.NewSnapshot()
	defer snap.Close()
	mit, err := snap.NewIter(&pebbledb.IterOptions{LowerBound: lower, UpperBound: upper})
	if err != nil {
		return nil, false, fmt.Errorf("pebble: scan records: %w", e.faults.classify(err))
	}
	defer mit.Close()
	dataBounds := &pebbledb.IterOptions{LowerBound: []byte(e.lay.data), UpperBound: familyEnd(e.lay.data)}
	dit, err := snap.NewIter(dataBounds)
	if err != nil {
		return nil, false, fmt.Errorf("pebble: scan records: %w", e.faults.classify(err))
	}
	defer func() { dit.Close() }()
	ok := mit.First()
	for ; ok && len(out) < recordChunk; ok = mit.Next() {
		id := e.lay.idOf(mit.Key())
		m, err := decodeMeta(mit.Value())
		if err != nil {
			out = append(out, scannedRecord{id: id, err: fmt.Errorf("pebble: block %q metadata undecodable: %v: %w", id, err, storage.ErrCorrupt)})
			continue
		}
		rec := storage.Record{Version: m.Version, Checksum: m.Checksum, Tombstone: m.Tombstone, StaleSince: m.StaleSince}
		if !m.Tombstone {
			rec.Data, err = e.payloadAt(dit, id, m)
			if err != nil && dit.Error() != nil {
				// A damaged table leaves the iterator unusable: a fresh
				// one goes on past it.
				dit.Close()
				if dit, err = snap.NewIter(dataBounds); err != nil {
					return nil, false, fmt.Errorf("pebble: scan records: %w", e.faults.classify(err))
				}
				err = fmt.Errorf("pebble: read payload of %q: %w", id, storage.ErrCorrupt)
			}
		}
		out = append(out, scannedRecord{id: id, rec: rec, err: err})
	}
	if err := mit.Error(); err != nil {
		return nil, false, fmt.Errorf("pebble: scan records: %w", e.faults.classify(err))
	}
	return out, ok, nil
}

// payloadAt moves dit to id's payload and returns a checked copy.
func (e *Engine) payloadAt(dit *pebbledb.Iterator, id string, m storage.Meta) ([]byte, error) {
	key := e.lay.dataKey(id)
	if !dit.SeekGE(key) || !bytes.Equal(dit.Key(), key) {
		return nil, fmt.Errorf("pebble: block %q has metadata but no payload: %w", id, storage.ErrCorrupt)
	}
	return checkedCopy(id, dit.Value(), m)
}
