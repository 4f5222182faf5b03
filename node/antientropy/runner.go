package antientropy

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/goblocks/goblocks/node/hlc"
	"github.com/goblocks/goblocks/node/pace"
	"github.com/goblocks/goblocks/node/ring"
	"github.com/goblocks/goblocks/node/storage"
	"github.com/goblocks/goblocks/node/wire"
)

// Peers reaches other nodes; transport.Client implements it. Methods may
// block on the network and are safe for concurrent use.
type Peers interface {
	// AntiEntropyDigests asks the node at addr for its digests of the
	// blocks it shares with self in ring ringID.
	AntiEntropyDigests(ctx context.Context, addr, self, ringID string) ([]uint64, error)
	// AntiEntropyEntries asks for its listing of those buckets.
	AntiEntropyEntries(ctx context.Context, addr, self, ringID string, buckets []int) ([]Entry, error)
	FetchBatch(ctx context.Context, addr string, ids []string) ([]wire.FetchReply, error)
	ApplyBatch(ctx context.Context, addr string, items []storage.Item) ([]wire.ApplyResult, error)
}

// Options configure a Runner.
type Options struct {
	Self   string
	Engine storage.Engine
	Peers  Peers
	View   ViewFunc
	// Interval between rounds; each round compares with one peer, in
	// rotation (default 10m).
	Interval time.Duration
	// Rate bounds repaired blocks per second in each direction (default
	// 1000, ~4 MB/s of 4 KiB blocks), so a badly diverged replica is
	// rebuilt without starving client traffic.
	Rate int
	// Observe, when set, is given the version of every record pulled, so
	// this node's clock never versions a write behind what it stores.
	// A record it refuses (a version too far in the future) is not
	// applied: the peer's clock, or this node's, is off.
	Observe func(hlc.Timestamp) error
	Logger  zerolog.Logger
	Metrics *Metrics // may be nil
}

// Runner runs anti-entropy rounds. Round and Run are not meant to run
// concurrently with each other.
type Runner struct {
	o    Options
	next int // rotation index into the sorted peer list
}

// batchSize is one fetch or apply request, as the batch endpoints allow.
const batchSize = wire.MaxBatch

// NewRunner returns a runner; nothing runs until Run.
func NewRunner(o Options) *Runner {
	if o.Interval <= 0 {
		o.Interval = 10 * time.Minute
	}
	if o.Rate <= 0 {
		o.Rate = 1000
	}
	if o.Metrics == nil {
		o.Metrics = NewMetrics(nil)
	}
	return &Runner{o: o}
}

// Run compares with one peer every Interval until ctx ends.
func (r *Runner) Run(ctx context.Context) error {
	t := time.NewTicker(r.o.Interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		peer, ok := r.nextPeer()
		if !ok {
			continue
		}
		if _, err := r.Round(ctx, peer); err != nil && ctx.Err() == nil {
			r.o.Logger.Warn().Err(err).Str("peer", peer.Name).Msg("anti-entropy round failed")
		}
	}
}

// Rebuild compares this node with every other member of its ring, each
// once, retrying the ones that fail every retry interval, until all were
// compared or ctx ends. A node that lost its store (corruption, a new
// disk) is refilled this way without waiting for the periodic rounds.
func (r *Runner) Rebuild(ctx context.Context, retry time.Duration) error {
	done := map[string]bool{}
	for {
		rg, _, migrating := r.o.View()
		if rg != nil && !migrating {
			left := 0
			for _, m := range rg.Members() {
				if m.Name == r.o.Self || done[m.Name] {
					continue
				}
				st, err := r.Round(ctx, m)
				if err != nil {
					left++
					r.o.Logger.Warn().Err(err).Str("peer", m.Name).Msg("rebuild: comparing with peer failed; retrying")
					continue
				}
				done[m.Name] = true
				r.o.Logger.Info().Str("peer", m.Name).Int("pulled", st.Pulled).Msg("rebuild: compared with peer")
			}
			if left == 0 {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(retry):
		}
	}
}

// nextPeer picks the next ring member after the last one compared.
func (r *Runner) nextPeer() (ring.Member, bool) {
	rg, _, _ := r.o.View()
	if rg == nil {
		return ring.Member{}, false
	}
	var peers []ring.Member
	for _, m := range rg.Members() {
		if m.Name != r.o.Self {
			peers = append(peers, m)
		}
	}
	if len(peers) == 0 {
		return ring.Member{}, false
	}
	r.next %= len(peers)
	p := peers[r.next]
	r.next++
	return p, true
}

// Result of a round, the label of blocks_antientropy_rounds_total.
const (
	ResultInSync   = "in_sync"
	ResultRepaired = "repaired"
	ResultSkipped  = "skipped"
	ResultError    = "error"
)

// RoundStats counts what one round did.
type RoundStats struct {
	Mismatched     int // buckets whose digests differed
	Pulled, Pushed int // records the comparison found newer on the other side
	Repaired       int // records actually stored (here or at the peer)
}

// Round compares this node with peer once and repairs both sides.
func (r *Runner) Round(ctx context.Context, peer ring.Member) (st RoundStats, err error) {
	result := ResultSkipped
	defer func() {
		if err != nil {
			result = ResultError
		}
		r.o.Metrics.Rounds.WithLabelValues(result).Inc()
	}()
	rg, rf, migrating := r.o.View()
	if rg == nil || migrating {
		return st, nil
	}
	if _, ok := rg.Member(peer.Name); !ok || peer.Name == r.o.Self {
		return st, nil
	}
	s := Scope{Ring: rg, RF: rf, Self: r.o.Self, Peer: peer.Name}
	ringID := RingID(rg, rf)
	start := time.Now()
	defer func() { r.o.Metrics.RoundSeconds.Observe(time.Since(start).Seconds()) }()
	local, err := Digest(r.o.Engine.ScanRange, s)
	if err != nil {
		return st, fmt.Errorf("antientropy: digest: %w", err)
	}
	remote, err := r.o.Peers.AntiEntropyDigests(ctx, peer.Addr, r.o.Self, ringID)
	if err != nil {
		return st, fmt.Errorf("antientropy: digests of %s: %w", peer.Name, err)
	}
	if len(remote) != Buckets {
		return st, fmt.Errorf("antientropy: %s sent %d digests, want %d", peer.Name, len(remote), Buckets)
	}
	mism := Mismatched(local, remote)
	st.Mismatched = len(mism)
	r.o.Metrics.BucketsMismatched.Add(float64(len(mism)))
	p := pace.NewLimiter(float64(r.o.Rate))
	for len(mism) > 0 {
		chunk := mism[:min(len(mism), MaxBucketsPerRequest)]
		mism = mism[len(chunk):]
		if err := r.repair(ctx, s, peer, ringID, chunk, &st, p); err != nil {
			return st, err
		}
	}
	result = ResultInSync
	if st.Mismatched > 0 {
		result = ResultRepaired
		r.o.Logger.Info().Str("peer", peer.Name).Int("buckets_mismatched", st.Mismatched).
			Int("pulled", st.Pulled).Int("pushed", st.Pushed).Int("repaired", st.Repaired).
			Msg("anti-entropy round repaired replicas")
	} else {
		r.o.Logger.Debug().Str("peer", peer.Name).Msg("anti-entropy round: in sync")
	}
	return st, nil
}

// repair lists a chunk of mismatched buckets on both sides and moves the
// newer records each way.
func (r *Runner) repair(ctx context.Context, s Scope, peer ring.Member, ringID string, buckets []int, st *RoundStats, p *pace.Limiter) error {
	remote, err := r.o.Peers.AntiEntropyEntries(ctx, peer.Addr, r.o.Self, ringID, buckets)
	if err != nil {
		return fmt.Errorf("antientropy: listing of %s: %w", peer.Name, err)
	}
	local, err := Collect(r.o.Engine.ScanRange, s, buckets)
	if err != nil {
		return fmt.Errorf("antientropy: listing: %w", err)
	}
	pull, push := Diff(local, remote)
	st.Pulled += len(pull)
	st.Pushed += len(push)
	// Pull what the peer has newer, then push what this node has newer.
	for _, dir := range []struct {
		ids  []string
		move func(context.Context, ring.Member, []string) (int, error)
	}{{pull, r.pull}, {push, r.push}} {
		for ids := dir.ids; len(ids) > 0; {
			batch := ids[:min(len(ids), batchSize)]
			ids = ids[len(batch):]
			n, err := dir.move(ctx, peer, batch)
			st.Repaired += n
			r.o.Metrics.BlocksRepaired.Add(float64(n))
			if err != nil {
				return err
			}
			if err := p.Wait(ctx, int64(len(batch))); err != nil {
				return err
			}
		}
	}
	return nil
}

// pull fetches the peer's copies and applies them here; LWW keeps
// whatever is newest by the time they arrive.
func (r *Runner) pull(ctx context.Context, peer ring.Member, ids []string) (int, error) {
	replies, err := r.o.Peers.FetchBatch(ctx, peer.Addr, ids)
	if err != nil {
		return 0, fmt.Errorf("antientropy: fetch from %s: %w", peer.Name, err)
	}
	items := make([]storage.Item, 0, len(replies))
	for i, rep := range replies {
		if rep.Status != wire.FetchFound {
			continue // gone meanwhile, or corrupt there: its own repair's job
		}
		rec := rep.Record
		rec.StaleSince = time.Time{} // this node owns it (it is in the scope)
		if r.o.Observe != nil {
			if err := r.o.Observe(rec.Version.Timestamp); err != nil {
				r.o.Logger.Warn().Err(err).Str("block_id", ids[i]).Str("peer", peer.Name).Str("version", rec.Version.String()).Msg("anti-entropy: refusing a record")
				continue
			}
		}
		items = append(items, storage.Item{ID: ids[i], Record: rec})
	}
	if len(items) == 0 {
		return 0, nil
	}
	applied, err := r.o.Engine.ApplyBatch(items)
	if err != nil {
		return 0, fmt.Errorf("antientropy: apply: %w", err)
	}
	return count(applied), nil
}

// push sends this node's copies to the peer.
func (r *Runner) push(ctx context.Context, peer ring.Member, ids []string) (int, error) {
	items := make([]storage.Item, 0, len(ids))
	for _, id := range ids {
		rec, err := r.o.Engine.Get(id)
		if errors.Is(err, storage.ErrNotFound) || (err == nil && rec.Stale()) {
			continue // removed or moved away meanwhile
		}
		if err != nil {
			// A corrupt copy is never sent; read repair and the peer's
			// own round replace it.
			r.o.Logger.Warn().Err(err).Str("block_id", id).Msg("anti-entropy: local copy unreadable")
			continue
		}
		items = append(items, storage.Item{ID: id, Record: rec})
	}
	if len(items) == 0 {
		return 0, nil
	}
	results, err := r.o.Peers.ApplyBatch(ctx, peer.Addr, items)
	if err != nil {
		return 0, fmt.Errorf("antientropy: apply at %s: %w", peer.Name, err)
	}
	applied := make([]bool, len(results))
	for i, res := range results {
		applied[i] = res.Applied
	}
	return count(applied), nil
}

func count(applied []bool) int {
	n := 0
	for _, ok := range applied {
		if ok {
			n++
		}
	}
	return n
}

// Metrics of anti-entropy.
type Metrics struct {
	Rounds            *prometheus.CounterVec
	RoundSeconds      prometheus.Histogram
	BucketsMismatched prometheus.Counter
	BlocksRepaired    prometheus.Counter
}

// NewMetrics creates and registers the metrics (reg nil: unregistered).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		Rounds: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "blocks_antientropy_rounds_total",
			Help: "Anti-entropy rounds by result (in_sync, repaired, skipped, error).",
		}, []string{"result"}),
		RoundSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "blocks_antientropy_round_seconds",
			Help:    "Duration of anti-entropy rounds that compared digests (not skipped).",
			Buckets: prometheus.ExponentialBuckets(0.001, 4, 10),
		}),
		BucketsMismatched: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "blocks_antientropy_buckets_mismatched_total",
			Help: "Digest buckets that differed between this node and a peer.",
		}),
		BlocksRepaired: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "blocks_antientropy_blocks_repaired_total",
			Help: "Records anti-entropy stored on this node or on a peer.",
		}),
	}
	for _, res := range []string{ResultInSync, ResultRepaired, ResultSkipped, ResultError} {
		m.Rounds.WithLabelValues(res)
	}
	if reg != nil {
		reg.MustRegister(m.Rounds, m.RoundSeconds, m.BucketsMismatched, m.BlocksRepaired)
	}
	return m
}
