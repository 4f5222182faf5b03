// Package storage defines the block record and the engine interface that
// the persistent (pebble) and memory engines implement. It knows nothing of
// rings or clusters: ownership decisions are made by callers.
package storage

import (
	"errors"
	"hash/crc32"
	"time"

	"github.com/goblocks/goblocks/node/hlc"
)

// Sentinel errors. Callers test them with errors.Is.
var (
	// ErrNotFound: no record (not even a tombstone) exists for the id.
	ErrNotFound = errors.New("storage: not found")
	// ErrCorrupt: a stored record failed its checksum or could not be
	// decoded. Its payload must never be served.
	ErrCorrupt = errors.New("storage: corrupt record")
	// ErrClosed: the engine has been closed.
	ErrClosed = errors.New("storage: closed")
	// ErrFailed: the engine cannot carry out the operation because of a
	// fault it cannot recover from while running. After a failed WAL
	// write (a full disk, say) it refuses every operation, reads included,
	// since its memory may hold writes that never reached the disk;
	// reopening the store (restarting the process) recovers every
	// acknowledged write. A corrupt store refuses writes once they would
	// stall. Health says which; the operation may or may not have
	// happened.
	ErrFailed = errors.New("storage: engine failed")
	// ErrZeroVersion: a record without a version. Every write is versioned
	// by its coordinator; a version-0 record would lose to anything and
	// make last-writer-wins meaningless, so engines refuse it.
	ErrZeroVersion = errors.New("storage: record has no version")
	// ErrUnordered: ScanRange on an engine that keeps records in id order
	// (a pebble engine opened without ByPosition).
	ErrUnordered = errors.New("storage: engine is not ordered by position")
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// Checksum returns the CRC32C of a payload, the checksum kept on disk and
// carried on the wire.
func Checksum(data []byte) uint32 { return crc32.Checksum(data, castagnoli) }

// Record is one stored version of a block.
type Record struct {
	// Data is the payload; empty for a tombstone.
	Data []byte
	// Version orders writes of the same block (last writer wins).
	Version hlc.Version
	// Checksum is the CRC32C of Data.
	Checksum uint32
	// Tombstone marks a delete. It is kept, versioned, so a late replica
	// of an older write cannot resurrect the block.
	Tombstone bool
	// StaleSince is zero while this node owns the block. After a ring
	// change moves the block away it holds the time the copy became stale;
	// the copy stays readable for the grace period, then is collected.
	StaleSince time.Time
}

// Stale reports whether the record is a copy this node no longer owns.
func (r Record) Stale() bool { return !r.StaleSince.IsZero() }

// Meta is a record without its payload: what scans and version probes need.
type Meta struct {
	Version    hlc.Version
	Checksum   uint32
	Size       int
	Tombstone  bool
	StaleSince time.Time
}

// Meta returns r without the payload.
func (r Record) Meta() Meta {
	return Meta{Version: r.Version, Checksum: r.Checksum, Size: len(r.Data), Tombstone: r.Tombstone, StaleSince: r.StaleSince}
}

// Supersedes reports whether incoming must replace stored under the apply
// rules: a newer version always wins; the same version wins only to turn a
// stale copy back into an owned one (the node has become an owner again).
func Supersedes(incoming, stored Meta) bool {
	switch incoming.Version.Compare(stored.Version) {
	case 1:
		return true
	case 0:
		return stored.StaleSince.After(time.Time{}) && incoming.StaleSince.IsZero()
	}
	return false
}
