// Package hints is hinted handoff: when a coordinator cannot reach a
// replica, it keeps the record as a hint for that replica and delivers it
// when the replica answers again. Without hints, a block written while an
// owner was down stays on RF-1 copies until something reads it, and a
// second failure could then lose an acknowledged write.
package hints

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/goblocks/goblocks/node/storage"
	"github.com/goblocks/goblocks/node/wire"
)

// Sender delivers records to a replica; transport.Client implements it.
// applied[i] is false when the replica already held a newer version, which
// counts as delivered too.
type Sender interface {
	ApplyBatch(ctx context.Context, addr string, items []storage.Item) ([]wire.ApplyResult, error)
}

// Options configure Hints.
type Options struct {
	// Engine holds the hints, keyed by target and block id; newer-wins
	// Apply keeps only the newest record per target and block. It belongs
	// to Hints' owner, who closes it after Run returns.
	Engine storage.Engine
	Sender Sender
	// Resolve returns the address of a ring member; false when the node is
	// in no ring this node knows (its hints wait, up to Window).
	Resolve func(name string) (addr string, ok bool)
	// Interval between delivery passes (default 1s).
	Interval time.Duration
	// Window is how long a hint is kept (by the record's version time).
	// A replica down longer is rebuilt by migration when it is removed
	// from the ring, or by read repair; Cassandra's default is 3 hours.
	Window  time.Duration
	Logger  zerolog.Logger
	Metrics *Metrics // may be nil
	Now     func() time.Time
}

// Hints stores and delivers hints. Add is safe for concurrent use with Run.
type Hints struct{ o Options }

// batchSize bounds one delivery request, as the batch endpoint does.
const batchSize = 256

// New returns Hints; nothing runs until Run.
func New(o Options) *Hints {
	if o.Interval <= 0 {
		o.Interval = time.Second
	}
	if o.Window <= 0 {
		o.Window = 3 * time.Hour
	}
	if o.Metrics == nil {
		o.Metrics = NewMetrics(nil)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return &Hints{o: o}
}

// key orders hints by target, so one scan yields each target's batch.
// Node names never contain NUL.
func key(target, id string) string { return target + "\x00" + id }

func splitKey(k string) (target, id string, ok bool) {
	return strings.Cut(k, "\x00")
}

// Add keeps rec for target. It is called on the write path after a
// replica call failed; an error is logged, not returned: the write's
// outcome does not depend on it.
func (h *Hints) Add(target, id string, rec storage.Record) {
	stored, err := h.o.Engine.Apply(key(target, id), rec)
	if err != nil {
		h.o.Logger.Warn().Err(err).Str("replica", target).Str("block_id", id).Msg("storing hint failed")
		return
	}
	if stored {
		h.o.Metrics.Stored.Inc()
	}
}

// Run delivers hints every Interval until ctx ends.
func (h *Hints) Run(ctx context.Context) error {
	t := time.NewTicker(h.o.Interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		if _, err := h.Deliver(ctx); err != nil && ctx.Err() == nil {
			h.o.Logger.Warn().Err(err).Msg("hint delivery pass failed")
		}
	}
}

// Deliver makes one pass over the hints: each reachable target gets its
// hints in batches, hints past the window are dropped. It returns how
// many hints were delivered. A target that fails is skipped until the
// next pass.
func (h *Hints) Deliver(ctx context.Context) (int, error) {
	var (
		delivered, pending int
		target             string
		batch              []storage.Item
		skip               string // target that failed in this pass
		errs               []error
	)
	flush := func() {
		if len(batch) == 0 {
			return
		}
		n, err := h.send(ctx, target, batch)
		delivered += n
		pending += len(batch) - n
		if err != nil {
			skip = target
			errs = append(errs, err)
		}
		batch = batch[:0]
	}
	cutoff := h.o.Now().Add(-h.o.Window)
	err := h.o.Engine.Scan("", func(k string, m storage.Meta) bool {
		t, id, ok := splitKey(k)
		if !ok {
			return true
		}
		if t != target {
			flush()
			target = t
		}
		if m.Version.Timestamp.Physical().Before(cutoff) {
			if removed, _ := h.o.Engine.Remove(k, m.Version); removed {
				h.o.Metrics.Dropped.Inc()
			}
			return true
		}
		if t == skip {
			pending++
			return true
		}
		rec, err := h.o.Engine.Get(k)
		if err != nil {
			if errors.Is(err, storage.ErrCorrupt) {
				_, _ = h.o.Engine.Remove(k, m.Version)
				h.o.Metrics.Dropped.Inc()
			}
			return true
		}
		batch = append(batch, storage.Item{ID: id, Record: rec})
		if len(batch) == batchSize {
			flush()
		}
		return ctx.Err() == nil
	})
	flush()
	h.o.Metrics.Pending.Set(float64(pending))
	return delivered, errors.Join(append(errs, err)...)
}

// send delivers one target's batch and removes what the target now holds.
func (h *Hints) send(ctx context.Context, target string, batch []storage.Item) (int, error) {
	addr, ok := h.o.Resolve(target)
	if !ok {
		return 0, nil // not in the ring (yet, or any more): wait for the window
	}
	if _, err := h.o.Sender.ApplyBatch(ctx, addr, batch); err != nil {
		return 0, fmt.Errorf("hints: deliver %d to %s: %w", len(batch), target, err)
	}
	n := 0
	for _, it := range batch {
		// Only this version: a hint stored meanwhile for a newer write
		// stays for the next pass.
		if removed, err := h.o.Engine.Remove(key(target, it.ID), it.Record.Version); err == nil && removed {
			n++
		}
	}
	h.o.Metrics.Delivered.Add(float64(n))
	if n > 0 {
		h.o.Logger.Info().Str("replica", target).Int("hints", n).Msg("delivered hints")
	}
	return n, nil
}

// Metrics of hinted handoff.
type Metrics struct {
	Stored, Delivered, Dropped prometheus.Counter
	Pending                    prometheus.Gauge
}

// NewMetrics creates and registers the metrics (reg nil: unregistered).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		Stored:    prometheus.NewCounter(prometheus.CounterOpts{Name: "blocks_hints_stored_total", Help: "Hints stored for replicas a write could not reach."}),
		Delivered: prometheus.NewCounter(prometheus.CounterOpts{Name: "blocks_hints_delivered_total", Help: "Hints delivered to their replica."}),
		Dropped:   prometheus.NewCounter(prometheus.CounterOpts{Name: "blocks_hints_dropped_total", Help: "Hints dropped past the hint window (or unreadable)."}),
		Pending:   prometheus.NewGauge(prometheus.GaugeOpts{Name: "blocks_hints_pending", Help: "Hints waiting for their replica, as of the last delivery pass."}),
	}
	if reg != nil {
		reg.MustRegister(m.Stored, m.Delivered, m.Dropped, m.Pending)
	}
	return m
}
