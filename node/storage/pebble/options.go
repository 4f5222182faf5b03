package pebble

import (
	"fmt"
	"time"

	pebbledb "github.com/cockroachdb/pebble"
	"github.com/cockroachdb/pebble/bloom"
)

// Defaults, sized for a store of 4 KiB values.
const (
	// DefaultCacheSize holds 16k blocks (plus index and filter blocks) in
	// memory: enough for the hot set of a demo or small node, small enough
	// to leave the page cache most of the machine.
	DefaultCacheSize = 64 << 20
	// DefaultMemTableSize absorbs ~16k block writes before a flush. Pebble's
	// own 4 MiB default would flush every ~1k writes and turn a write burst
	// into a stream of tiny L0 files.
	DefaultMemTableSize = 64 << 20
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
	// stalls, fatal invariants). Nil discards them; without a logger pebble
	// would print to stderr, bypassing the node's structured logs.
	// It must be safe for concurrent use.
	Logf func(format string, args ...any)
	// WALMinSyncInterval is the shortest time between WAL fsyncs; commits
	// that arrive meanwhile share the next one (group commit).
	WALMinSyncInterval time.Duration
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

// logger adapts Logf to pebble.Logger.
type logger struct {
	logf func(format string, args ...any)
}

func (l logger) Infof(format string, args ...any) { l.logf(format, args...) }

// Fatalf is called on broken invariants (a corrupt manifest, say). Pebble
// requires it not to return; panicking instead of os.Exit lets deferred
// cleanup and the caller's crash reporting run.
func (l logger) Fatalf(format string, args ...any) {
	l.logf(format, args...)
	panic(fmt.Sprintf("pebble: fatal: "+format, args...))
}

// pebbleOptions translates o (after EnsureDefaults) into pebble's options.
// cache is passed in because its reference must be dropped by the caller.
func (o *Options) pebbleOptions(cache *pebbledb.Cache) *pebbledb.Options {
	log := logger{o.Logf}
	po := &pebbledb.Options{
		Cache:        cache,
		MemTableSize: o.MemTableSize,
		Logger:       log,
		// The newest format of v1 is readable by pebble v2, so a later
		// upgrade needs no format ratchet first.
		FormatMajorVersion: pebbledb.FormatNewest,
		// Waiting up to this long before a WAL fsync lets the commits of
		// concurrent requests share it: on a disk that does ~2,000 fsyncs/s
		// that is what turns fsync'd writes from disk-bound into CPU-bound.
		WALMinSyncInterval: func() time.Duration { return o.WALMinSyncInterval },
		// L0 thresholds stay at pebble's defaults (compact at 4 files, stop
		// writes at 12): with 64 MiB memtables that is ample headroom.
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
	el := pebbledb.MakeLoggingEventListener(log)
	// Flush, compaction and table events would log on every flush; keep
	// only what an operator acts on.
	po.EventListener = &pebbledb.EventListener{
		BackgroundError: el.BackgroundError,
		DiskSlow:        el.DiskSlow,
		WriteStallBegin: el.WriteStallBegin,
		WriteStallEnd:   el.WriteStallEnd,
	}
	return po
}
