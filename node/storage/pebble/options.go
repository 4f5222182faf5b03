package pebble

import (
	"fmt"
	"io"
	"time"

	pebbledb "github.com/cockroachdb/pebble"
	"github.com/cockroachdb/pebble/bloom"
	"github.com/cockroachdb/pebble/vfs"
)

// Defaults, sized for a store of 4 KiB values.
const (
	// DefaultCacheSize holds 8k blocks (plus index and filter blocks) in
	// memory: enough for the hot set of a demo or small node, small enough
	// to leave the page cache most of the machine. A static (cgo-less)
	// binary keeps the cache and the memtables on the Go heap: with 64 MiB
	// each a node reached ~300 MB RSS under the bench, against a 512Mi
	// limit in Kubernetes; at 32 MiB, ~175 MB with the same throughput.
	DefaultCacheSize = 32 << 20
	// DefaultMemTableSize absorbs ~8k block writes before a flush. Pebble's
	// own 4 MiB default would flush every ~1k writes and turn a write burst
	// into a stream of tiny L0 files.
	DefaultMemTableSize = 32 << 20
)

// Minimums: below these pebble either refuses to open or thrashes.
const (
	minCacheSize    = 1 << 20
	minMemTableSize = 1 << 20
	// pebble rejects memtables of 4 GiB or more.
	maxMemTableSize = 4<<30 - 1
)

// Options configures Open. The zero value is valid: Open applies
// EnsureDefaults and then Validate.
type Options struct {
	// CacheSize is the block cache in bytes. Default DefaultCacheSize.
	CacheSize int64
	// MemTableSize is the size in bytes of each memtable. Up to two may be
	// in memory at once (one filling, one flushing). Default
	// DefaultMemTableSize.
	MemTableSize uint64
	// Logf receives pebble's own log lines (background errors, write
	// stalls, fatal errors), at most one line per kind every 10 s. Nil
	// discards them; without a logger pebble would print to stderr,
	// bypassing the node's structured logs. It must be safe for concurrent
	// use and must not call back into the engine: pebble may hold its own
	// mutex when it logs.
	Logf func(format string, args ...any)
	// WALMinSyncInterval is the shortest time between WAL fsyncs; commits
	// that arrive meanwhile share the next one (group commit).
	WALMinSyncInterval time.Duration
	// Now is the clock that stamps Health and paces rate-limited log
	// lines. Default time.Now.
	Now func() time.Time
	// ReadOnly opens the store without writing anything: the WAL is
	// replayed into memory, nothing is flushed or compacted, and every
	// write fails. How a node starts on a disk too full to open a store
	// for writing (replaying the WAL writes a table).
	ReadOnly bool
	// ByPosition keeps records in ring-position order (the data store),
	// so ScanRange reads only the arc it is asked for; without it records
	// are in id order (the hints store, keyed by target node). An older
	// store in id order is converted when opened with ByPosition.
	ByPosition bool

	// fs replaces the real filesystem in fault-injection tests.
	fs vfs.FS
}

// EnsureDefaults fills unset fields with their defaults and returns o.
func (o *Options) EnsureDefaults() *Options {
	if o.CacheSize == 0 {
		o.CacheSize = DefaultCacheSize
	}
	if o.MemTableSize == 0 {
		o.MemTableSize = DefaultMemTableSize
	}
	if o.WALMinSyncInterval == 0 {
		o.WALMinSyncInterval = time.Millisecond
	}
	if o.Logf == nil {
		o.Logf = func(string, ...any) {}
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return o
}

// Validate reports options that cannot work. Call it after EnsureDefaults.
func (o *Options) Validate() error {
	if o.CacheSize < minCacheSize {
		return fmt.Errorf("pebble: CacheSize %d below minimum %d", o.CacheSize, minCacheSize)
	}
	if o.MemTableSize < minMemTableSize || o.MemTableSize > maxMemTableSize {
		return fmt.Errorf("pebble: MemTableSize %d outside [%d, %d]", o.MemTableSize, minMemTableSize, uint64(maxMemTableSize))
	}
	return nil
}

// bloomPolicy uses 10 bits per key: ~1% false positives.
var bloomPolicy = bloom.FilterPolicy(10)

// diskSlowThreshold is pebble's own default for reporting a write or
// sync that takes this long (Options.WithFSDefaults).
const diskSlowThreshold = 5 * time.Second

// pebbleOptions translates o (after EnsureDefaults) into pebble's options,
// with f receiving pebble's logs, fatal errors and background errors. cache
// is passed in because its reference must be dropped by the caller; the
// closer stops the disk-health monitor and must be called after the DB is
// closed (or failed to open).
func (o *Options) pebbleOptions(cache *pebbledb.Cache, f *faults) (*pebbledb.Options, io.Closer) {
	po := &pebbledb.Options{
		Cache:        cache,
		MemTableSize: o.MemTableSize,
		Logger:       logger{f},
		// The newest format of v1 is readable by pebble v2, so a later
		// upgrade needs no format ratchet first.
		FormatMajorVersion: pebbledb.FormatNewest,
		// Waiting up to this long before a WAL fsync lets the commits of
		// concurrent requests share it: on a disk that does ~2,000 fsyncs/s
		// that is what turns fsync'd writes from disk-bound into CPU-bound.
		WALMinSyncInterval: func() time.Duration { return o.WALMinSyncInterval },
		// Consulted before every compaction is scheduled: the way to halt
		// them at run time (see faults.maxCompactions).
		MaxConcurrentCompactions: f.maxCompactions,
		EventListener:            f.eventListener(),
		ReadOnly:                 o.ReadOnly,
		// L0 thresholds stay at pebble's defaults (compact at 4 files, stop
		// writes at 12): with 32 MiB memtables that is ample headroom.
	}
	// Every first write of a block probes for an m/ key that does not
	// exist; bloom filters answer those misses without reading data blocks.
	po.Levels = make([]pebbledb.LevelOptions, 7)
	for i := range po.Levels {
		l := &po.Levels[i]
		l.FilterPolicy = bloomPolicy
		if i > 0 {
			l.TargetFileSize = po.Levels[i-1].TargetFileSize * 2
		}
		l.EnsureDefaults()
	}
	// Pebble would wrap its default FS in disk-health checks itself, but
	// then closes the monitor only in DB.Close, leaking it when Open fails.
	base := o.fs
	if base == nil {
		base = vfs.Default
	}
	el := po.EventListener
	fs, closer := vfs.WithDiskHealthChecks(checkedFS{FS: base, walFailed: f.fail}, diskSlowThreshold,
		func(info vfs.DiskSlowInfo) { el.DiskSlow(info) })
	po.FS = fs
	// Fill in pebble's defaults now, so that the engine can read them
	// (L0StopWritesThreshold); Open would apply the same ones.
	po.EnsureDefaults()
	return po, closer
}
