package app

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/goblocks/goblocks/node/api"
	"github.com/goblocks/goblocks/node/storage"
	"github.com/goblocks/goblocks/node/storage/diskguard"
	"github.com/goblocks/goblocks/node/storage/pebble"
)

// The data store keeps blocks in ring-position order, so a migration or a
// GC of the arcs a ring change moved reads only those arcs.
var dataOptions = pebble.Options{ByPosition: true}

// The hints store holds only the writes a down replica missed: small
// buffers leave the memory to the data store (a node must stay within
// half of its 512 MiB Kubernetes limit under load).
var hintsOptions = pebble.Options{CacheSize: 4 << 20, MemTableSize: 4 << 20}

// openStores opens the data store (moving an unreadable one aside when
// RebuildCorruptStore allows) and the hints store, each behind the
// free-space guard.
func (n *Node) openStores() error {
	cfg := n.cfg
	e, err := openEngine(cfg, cfg.DataDir, dataOptions, n.log)
	if err == nil && cfg.RebuildCorruptStore {
		if reason, marked := rebuildMarked(cfg.DataDir); marked {
			e.Close()
			err = fmt.Errorf("the store was marked for a rebuild (%s): %w", reason, storage.ErrCorrupt)
		}
	}
	if errors.Is(err, syscall.ENOSPC) {
		// Opening for writes replays the WAL into a new table; with no
		// room for it, serve reads from a read-only store until there is.
		n.log.Error().Err(err).Msg("the disk is too full to open the store for writing: starting read-only; the node restarts by itself once space returns")
		e, err = openEngine(cfg, cfg.DataDir, pebble.Options{ReadOnly: true, ByPosition: true}, n.log)
		n.readOnly = err == nil
	}
	if errors.Is(err, storage.ErrCorrupt) {
		if !cfg.RebuildCorruptStore {
			return fmt.Errorf("%w\nthe store cannot be opened: set RebuildCorruptStore=true to move it aside and refill this node from its replicas (see README, Operations)", err)
		}
		if e, err = n.rebuildStore(err); err != nil {
			return err
		}
	}
	if err != nil {
		return err
	}
	n.engine = e
	if cfg.Storage == "pebble" {
		n.disk = diskguard.New(cfg.DataDir, uint64(cfg.MinFreeBytes))
		n.engine = diskguard.Engine{Engine: e, Guard: n.disk}
		if err := n.disk.Check(); err != nil {
			n.log.Error().Err(err).Msg("starting read-only: the disk is full")
		}
	}
	if cfg.HintWindow <= 0 || n.readOnly {
		return nil // a read-only node coordinates no writes: it needs no hints
	}
	// Hints live in an engine of their own so that scans by migration and
	// GC never meet them.
	h, err := openEngine(cfg, filepath.Join(cfg.DataDir, "hints"), hintsOptions, n.log)
	if errors.Is(err, storage.ErrCorrupt) && cfg.RebuildCorruptStore {
		// Lost hints are covered by anti-entropy and read repair.
		dir := filepath.Join(cfg.DataDir, "hints")
		if aside, merr := moveAside(dir); merr == nil {
			n.log.Error().Err(err).Str("moved_to", aside).Msg("hints store unreadable: moved aside, starting without hints")
			h, err = openEngine(cfg, dir, hintsOptions, n.log)
		}
	}
	if err != nil {
		e.Close()
		return err
	}
	n.hintsDB = h
	if n.disk != nil {
		n.hintsDB = diskguard.Engine{Engine: h, Guard: n.disk}
	}
	return nil
}

// rebuildStore moves the unreadable store aside (kept for inspection,
// never deleted) and opens an empty one in its place.
func (n *Node) rebuildStore(cause error) (storage.Engine, error) {
	aside, err := moveAside(n.cfg.DataDir)
	if err != nil {
		return nil, fmt.Errorf("%w; moving it aside failed too: %w", cause, err)
	}
	n.movedAside = aside
	n.rebuilding.Store(true)
	n.log.Error().Err(cause).Str("moved_to", aside).
		Msg("the store could not be opened: moved it aside, starting empty and rebuilding from the replicas (RebuildCorruptStore)")
	return openEngine(n.cfg, n.cfg.DataDir, dataOptions, n.log)
}

// rebuildMarker is written into a store found damaged while running, so
// that the next start rebuilds it (RebuildCorruptStore): damage inside a
// table does not stop the store from opening, but it halts compactions
// for good.
const rebuildMarker = "REBUILD"

func rebuildMarked(dir string) (string, bool) {
	b, err := os.ReadFile(filepath.Join(dir, rebuildMarker))
	return strings.TrimSpace(string(b)), err == nil
}

func markForRebuild(dir, reason string) error {
	return os.WriteFile(filepath.Join(dir, rebuildMarker), []byte(reason+"\n"), 0o644)
}

// moveAside renames dir to dir.corrupt-<time>.
func moveAside(dir string) (string, error) {
	aside := fmt.Sprintf("%s.corrupt-%s", filepath.Clean(dir), time.Now().UTC().Format("20060102T150405"))
	if err := os.Rename(dir, aside); err != nil {
		return "", err
	}
	return aside, nil
}

// rebuild refills a store that was moved aside by comparing with every
// peer once, then clears the rebuilding state.
func (n *Node) rebuild(ctx context.Context) error {
	if !n.rebuilding.Load() {
		return nil
	}
	start := time.Now()
	if err := n.ae.Rebuild(ctx, 2*time.Second); err != nil {
		return err
	}
	n.rebuilding.Store(false)
	n.log.Info().Dur("took", time.Since(start)).Int64("blocks", n.engine.Count()).Msg("rebuild complete: compared with every replica")
	return nil
}

// conditions lists what /health reports beside readiness.
func (n *Node) conditions() []api.Condition {
	var out []api.Condition
	if n.readOnly {
		out = append(out, api.Condition{Code: "read_only", Unavailable: true,
			Message: "the disk was too full to open the store for writing at start: serving reads only; the node restarts by itself once MinFreeBytes are free"})
	}
	if err := n.disk.Check(); err != nil {
		out = append(out, api.Condition{Code: "disk_full", Message: err.Error() + "; reads are served, peers keep hints of the refused writes", Unavailable: true})
	}
	if n.rebuilding.Load() {
		out = append(out, api.Condition{Code: "rebuilding", Message: fmt.Sprintf(
			"the store could not be opened and was moved to %s; this node is being refilled from its replicas", n.movedAside)})
	}
	for _, e := range []storage.Engine{n.engine, n.hintsDB} {
		if hr, ok := unwrapEngine(e).(storage.HealthReporter); ok {
			out = append(out, engineConditions(hr.Health())...)
		}
	}
	if n.store != nil {
		for _, p := range n.store.Problems() {
			out = append(out, api.Condition{Code: "invalid_coordination_data", Message: p})
		}
	}
	return out
}

// engineConditions turns an engine's own account of its faults into
// /health conditions.
func engineConditions(h storage.Health) []api.Condition {
	var out []api.Condition
	if h.Failed {
		out = append(out, api.Condition{Code: "store_failed", Unavailable: true, Message: fmt.Sprintf(
			"the store stopped at %s after a fault it cannot recover from while running (%s); the node restarts to reopen it",
			h.FailedAt.Format(time.RFC3339), h.FailedReason)})
	}
	if h.Corrupt {
		out = append(out, api.Condition{Code: "corrupt_store", Message: fmt.Sprintf(
			"damage found in the store's files at %s (%s): blocks that fail their checksums are read from and repaired by the replicas; restart with RebuildCorruptStore=true to rebuild the store from them",
			h.CorruptAt.Format(time.RFC3339), h.CorruptReason)})
	}
	if h.BackgroundErrors > 0 && time.Since(h.LastBackgroundErrorAt) < 10*time.Minute {
		out = append(out, api.Condition{Code: "store_background_errors", Message: fmt.Sprintf(
			"%d failed flushes or compactions, the last at %s: %s", h.BackgroundErrors, h.LastBackgroundErrorAt.Format(time.RFC3339), h.LastBackgroundError)})
	}
	return out
}

func unwrapEngine(e storage.Engine) storage.Engine {
	if g, ok := e.(diskguard.Engine); ok {
		return g.Engine
	}
	return e
}

// registerHealthMetrics exports what conditions reports, for alerts.
func (n *Node) registerHealthMetrics() {
	n.zkInvalid = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "blocks_zk_invalid_reads_total", Help: "Reads of ZooKeeper znodes whose content was invalid and refused (the last valid value is used).",
	})
	n.registry.MustRegister(n.zkInvalid,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "blocks_rebuilding", Help: "1 while this node refills a store it had to move aside (RebuildCorruptStore).",
		}, func() float64 { return boolGauge(n.rebuilding.Load()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "blocks_disk_full", Help: "1 while writes are refused because free space is below MinFreeBytes.",
		}, func() float64 { return boolGauge(n.disk.Check() != nil) }),
	)
	if n.disk != nil {
		n.registry.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "blocks_disk_free_bytes", Help: "Free space of the data directory's filesystem, as last measured.",
		}, func() float64 { return float64(n.disk.Available()) }))
	}
}

func boolGauge(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// background is the node's long-running components: each is waited for,
// and an error one returns is logged as it happens and returned by wait.
type background struct {
	wg   sync.WaitGroup
	mu   sync.Mutex
	errs []error
}

func (b *background) start(n *Node, name string, run func() error) {
	b.wg.Add(1)
	go func() {
		defer b.wg.Done()
		if err := run(); err != nil && !errors.Is(err, context.Canceled) {
			n.log.Error().Err(err).Str("component", name).Msg("stopped with an error")
			b.mu.Lock()
			b.errs = append(b.errs, fmt.Errorf("%s: %w", name, err))
			b.mu.Unlock()
		}
	}()
}

func (b *background) wait() error {
	b.wg.Wait()
	return errors.Join(b.errs...)
}

// startBackground starts the migration driver, hinted handoff,
// anti-entropy, a rebuild and the free-space guard, until ctx ends.
func (n *Node) startBackground(ctx context.Context) *background {
	b := &background{}
	if n.driver != nil {
		b.start(n, "migration", func() error { return n.driver.Run(ctx) })
	}
	if n.hints != nil {
		b.start(n, "hints", func() error { return n.hints.Run(ctx) })
	}
	if n.ae != nil && n.cfg.AntiEntropyInterval > 0 {
		b.start(n, "antientropy", func() error { return n.ae.Run(ctx) })
	}
	if n.rebuilding.Load() {
		b.start(n, "rebuild", func() error { return n.rebuild(ctx) })
	}
	if n.disk != nil {
		b.start(n, "diskguard", func() error { n.disk.Run(ctx); return nil })
	}
	if hr, ok := unwrapEngine(n.engine).(storage.HealthReporter); ok {
		b.start(n, "storewatch", func() error { n.watchStore(ctx, hr); return nil })
	}
	return b
}

// watchStore stops the node when its store failed for good (pebble's
// state after, say, a failed WAL write cannot be trusted): the process
// exits with an error, its supervisor restarts it, and reopening the store
// recovers every acknowledged write from the WAL.
func (n *Node) watchStore(ctx context.Context, hr storage.HealthReporter) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if n.readOnly && n.disk.Check() == nil {
			n.fail(errors.New("space is back: stopping so that the next start opens the store for writing"))
			return
		}
		h := hr.Health()
		if h.Failed {
			n.fail(fmt.Errorf("store failed: %s: %w", h.FailedReason, storage.ErrFailed))
			return
		}
		if h.Corrupt && n.cfg.RebuildCorruptStore {
			if err := markForRebuild(n.cfg.DataDir, h.CorruptReason); err != nil {
				n.log.Error().Err(err).Msg("marking the damaged store for a rebuild")
				continue
			}
			n.fail(fmt.Errorf("store damaged (%s): restarting to rebuild it from the replicas (RebuildCorruptStore): %w", h.CorruptReason, storage.ErrCorrupt))
			return
		}
	}
}
