package pebble

import (
	"bytes"
	"errors"

	pebbledb "github.com/cockroachdb/pebble"
	"github.com/cockroachdb/pebble/vfs"
)

// Test hooks that reach past the engine to damage what is on disk. This
// file is compiled only into the package's tests.

// CorruptForTest flips a bit in the stored payload of id.
func (e *Engine) CorruptForTest(id string) error {
	v, closer, err := e.db.Get(e.lay.dataKey(id))
	if err != nil {
		return err
	}
	v = bytes.Clone(v)
	closer.Close()
	if len(v) == 0 {
		return errors.New("empty payload")
	}
	v[len(v)/2] ^= 0x10
	return e.db.Set(e.lay.dataKey(id), v, pebbledb.Sync)
}

// SetRawForTest writes value under the raw key, behind the engine's back:
// the metadata cache is dropped so that reads see it.
func (e *Engine) SetRawForTest(key, value []byte) error {
	e.metas.clear()
	return e.db.Set(key, value, pebbledb.Sync)
}

// DeleteRawForTest deletes the raw key (and drops the metadata cache).
func (e *Engine) DeleteRawForTest(key []byte) error {
	e.metas.clear()
	return e.db.Delete(key, pebbledb.Sync)
}

// DropMetaCacheForTest forgets the cached metadata, as a restart does: a
// test that damages files under a running engine reads them afterwards.
func (e *Engine) DropMetaCacheForTest() { e.metas.clear() }

// MetaCachedForTest reports whether id's metadata is cached.
func (e *Engine) MetaCachedForTest(id string) bool {
	_, ok := e.metas.get(e.stripeOf(id), id)
	return ok
}

// FsyncsForTest is WALSyncs under its test name.
func (e *Engine) FsyncsForTest() uint64 { return e.WALSyncs() }

// WithFSForTest returns o with fs in place of the real filesystem, for
// fault injection (vfs/errorfs).
func WithFSForTest(o Options, fs vfs.FS) Options {
	o.fs = fs
	return o
}

// FlushForTest flushes the memtable to a table, so tests can damage it.
func (e *Engine) FlushForTest() error { return e.Flush() }

// CompactionsForTest returns how many compactions pebble has completed.
func (e *Engine) CompactionsForTest() int64 { return e.db.Metrics().Compact.Count }

// WedgedForTest reports whether pebble wedged under the engine (see gate).
func (e *Engine) WedgedForTest() bool {
	e.gate.mu.Lock()
	defer e.gate.mu.Unlock()
	return e.gate.wedged
}

// ConvertSomeForTest moves one batch of an id-layout store to the
// position layout, as an Open interrupted after one batch would have.
func ConvertSomeForTest(dir string) (int, error) {
	db, err := pebbledb.Open(dir, &pebbledb.Options{})
	if err != nil {
		return 0, err
	}
	defer db.Close()
	return convertSome(db)
}

// ConvertBatch is convertBatch.
const ConvertBatch = convertBatch

// clear forgets every cached entry (tests that write behind the engine).
func (c *metaCache) clear() {
	for i := range c.shards {
		s := &c.shards[i]
		s.mu.Lock()
		s.m = nil
		s.mu.Unlock()
	}
}
