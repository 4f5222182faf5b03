package storage

import (
	"time"

	"github.com/goblocks/goblocks/node/hlc"
	"github.com/goblocks/goblocks/node/ring"
)

// MetaResult is one answer of Engine.GetMetas: the metadata, or the error
// GetMeta would have returned.
type MetaResult struct {
	Meta Meta
	Err  error
}

// Engine stores versioned block records keyed by block id.
//
// Implementations are safe for concurrent use. Methods may block on disk
// I/O; a method that returns nil error has made its change durable (the
// pebble engine syncs its WAL, grouping concurrent commits into one sync).
// Slices passed in are not retained; slices returned belong to the caller.
// Any method may fail with an error wrapping ErrFailed (see there).
type Engine interface {
	// Get returns the record for id: ErrNotFound if none, an error
	// wrapping ErrCorrupt if its checksum does not match.
	Get(id string) (Record, error)
	// GetMeta returns the record's metadata without reading the payload.
	GetMeta(id string) (Meta, error)
	// GetMetas is GetMeta for many ids at once: results[i] answers
	// ids[i] as GetMeta(ids[i]) would. An engine may read them in key
	// order in one pass (the versions a migration asks of an arc).
	GetMetas(ids []string) []MetaResult
	// Apply stores rec for id if it Supersedes the stored record (or none
	// is stored) and reports whether it did. rec.Checksum must match
	// rec.Data (ErrCorrupt otherwise: a corrupt copy is never stored).
	Apply(id string, rec Record) (bool, error)
	// ApplyBatch applies many records with one durable commit. applied[i]
	// reports the outcome for items[i].
	ApplyBatch(items []Item) (applied []bool, err error)
	// MarkStale sets StaleSince on id's record if its version is still v
	// (a newer write in between wins). since.IsZero() marks it owned again.
	// It need not be durable before it returns (a crash may undo it; the
	// garbage-collection pass that made it makes it again): a persistent
	// engine makes it durable with its next durable write.
	MarkStale(id string, v hlc.Version, since time.Time) (bool, error)
	// Remove deletes id's record if its version is still v; used by garbage
	// collection, tombstone purging and delivered hints. Durability as for
	// MarkStale: what a crash undoes is removed again.
	Remove(id string, v hlc.Version) (bool, error)
	// ApplyChanges makes many MarkStale and Remove changes, each
	// conditional on its version as those calls are, with one commit and
	// their durability: a GC pass changes an arc's worth of records
	// without a commit (and a wait in the commit queue) per record.
	// done[i] reports whether changes[i] happened.
	ApplyChanges(changes []Change) (done []bool, err error)
	// Scan calls fn with each record's metadata in key order, starting
	// after the id `after` ("" = from the start), until fn returns false.
	// Key order is ascending id, or ascending (ring.Position(id), id) for
	// an engine kept in position order. Writes during a scan may or may
	// not be seen.
	Scan(after string, fn func(id string, m Meta) bool) error
	// ScanRange calls fn with the metadata of each record whose ring
	// position lies in arc r, clockwise from r.Start, until fn returns
	// false. An engine kept in position order reads only that arc (the
	// cost of a migration or a GC of the arcs a ring change moved follows
	// the data they hold, not the data stored); one kept in id order
	// fails with ErrUnordered.
	ScanRange(r ring.Range, fn func(id string, m Meta) bool) error
	// ScanRecords is ScanRange with the whole records: a migration
	// streams an arc without a point read per block. A record that fails
	// its checksum is passed with err wrapping ErrCorrupt (and no payload),
	// so the caller can get that block elsewhere; fn runs with no lock or
	// iterator held.
	ScanRecords(r ring.Range, fn func(id string, rec Record, err error) bool) error
	// Count returns the number of non-tombstone records (owned or stale).
	Count() int64
	// Close releases the engine. Later calls return ErrClosed.
	Close() error
}

// Change is one conditional change of ApplyChanges: remove the record, or
// set its StaleSince (zero: owned again), if its version is still Version.
// A removal with StaleSince set also needs the record still stale since
// then: garbage collection decides to remove a stale copy by a view that a
// ring change can replace before the commit, and a copy that a transfer
// has made owned again in between (the same version, sent to its new
// owner) must stay.
type Change struct {
	ID         string
	Version    hlc.Version
	Remove     bool
	StaleSince time.Time
}

// Item is one record of a batch.
type Item struct {
	ID     string
	Record Record
}

// NewRecord builds an owned record for data at version v.
func NewRecord(data []byte, v hlc.Version) Record {
	return Record{Data: data, Version: v, Checksum: Checksum(data)}
}

// NewTombstone builds a tombstone at version v.
func NewTombstone(v hlc.Version) Record {
	return Record{Version: v, Checksum: Checksum(nil), Tombstone: true}
}

// HealthReporter is implemented by engines that can degrade while they run
// (the pebble engine; the memory engine cannot). Health is safe for
// concurrent use, never blocks on I/O, and works after Close.
type HealthReporter interface {
	Health() Health
}

// Health is an engine's account of faults it found on its own, for the
// node's /health endpoint and metrics. The zero value is a healthy engine.
type Health struct {
	// Failed is set once the engine refuses all operations with ErrFailed
	// (see there). The node should stop serving from this store and
	// restart; FailedReason and FailedAt describe the first fault.
	Failed       bool
	FailedReason string
	FailedAt     time.Time
	// Corrupt is set once the engine found damage in its files that it
	// cannot repair itself: a block that fails its checksum inside the
	// LSM. Reads of intact records still work and single records can be
	// overwritten, but the damaged file can never be compacted away, so
	// the node should rebuild this store from its replicas.
	Corrupt       bool
	CorruptReason string
	CorruptAt     time.Time
	// BackgroundErrors counts failed background jobs (flushes and
	// compactions) since the engine opened; the last one is described by
	// LastBackgroundError and LastBackgroundErrorAt. A count that keeps
	// growing means the engine cannot keep its files in shape (a full
	// disk, say) even if no request has failed yet.
	BackgroundErrors      uint64
	LastBackgroundError   string
	LastBackgroundErrorAt time.Time
}

// OK reports whether the engine is fit to serve: neither failed nor
// corrupt. Background errors alone do not make it unfit: pebble retries.
func (h Health) OK() bool { return !h.Failed && !h.Corrupt }
