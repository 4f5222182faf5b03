package pebble

import (
	"bytes"
	"errors"

	pebbledb "github.com/cockroachdb/pebble"
)

// Test hooks that reach past the engine to damage what is on disk. This
// file is compiled only into the package's tests.

// CorruptForTest flips a bit in the stored payload of id.
func (e *Engine) CorruptForTest(id string) error {
	v, closer, err := e.db.Get(dataKey(id))
	if err != nil {
		return err
	}
	v = bytes.Clone(v)
	closer.Close()
	if len(v) == 0 {
		return errors.New("empty payload")
	}
	v[len(v)/2] ^= 0x10
	return e.db.Set(dataKey(id), v, pebbledb.Sync)
}

// SetRawForTest writes value under the raw key.
func (e *Engine) SetRawForTest(key, value []byte) error {
	return e.db.Set(key, value, pebbledb.Sync)
}

// DeleteRawForTest deletes the raw key.
func (e *Engine) DeleteRawForTest(key []byte) error {
	return e.db.Delete(key, pebbledb.Sync)
}

// FsyncsForTest is WALSyncs under its test name.
func (e *Engine) FsyncsForTest() uint64 { return e.WALSyncs() }
