// Package replication coordinates client requests across a block's
// replicas: writes go to every owner in parallel and succeed after the
// required acknowledgements, reads ask the required owners, return the
// newest version and repair replicas that lag. Any node coordinates any
// request.
package replication

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"
	"go.opentelemetry.io/otel/trace"

	"github.com/goblocks/goblocks/node/hlc"
	"github.com/goblocks/goblocks/node/ring"
	"github.com/goblocks/goblocks/node/storage"
)

// ErrUnavailable: too few replicas answered to satisfy the consistency
// level. Nothing is promised about whether a write was stored.
var ErrUnavailable = errors.New("replication: not enough replicas")

// Peers reaches other nodes' local copies. Implementations are safe for
// concurrent use and honour ctx; returned records belong to the caller.
type Peers interface {
	// Apply stores rec on the replica at addr if it is newer there and
	// returns the version the replica holds afterwards: rec.Version when
	// it stored it or already held it, a newer version when it refused it
	// (the zero version when it refused it and cannot read its own copy).
	Apply(ctx context.Context, addr, id string, rec storage.Record) (hlc.Version, error)
	// Fetch returns the replica's local record; storage.ErrNotFound when
	// it holds none.
	Fetch(ctx context.Context, addr, id string) (storage.Record, error)
	// FetchMeta is Fetch without the payload.
	FetchMeta(ctx context.Context, addr, id string) (storage.Meta, error)
	// FetchDigest is FetchMeta after the replica has read its payload
	// and checked it against its checksum (an error wrapping
	// storage.ErrCorrupt if it fails): the digest reply of a read, which
	// finds a damaged copy as a full read does without moving it.
	FetchDigest(ctx context.Context, addr, id string) (storage.Meta, error)
}

// Options configure a Coordinator.
type Options struct {
	Self             string
	Engine           storage.Engine
	Peers            Peers
	Clock            *hlc.Clock
	ReadConsistency  Consistency
	WriteConsistency Consistency
	ReadRepairChance float64
	// ReplicaTimeout bounds one replica call, including the calls that
	// finish in the background after the client has its answer.
	ReplicaTimeout time.Duration
	Logger         zerolog.Logger
	Metrics        *Metrics // may be nil
	// Tracer, when set, records a span for every replica call; nil costs
	// nothing.
	Tracer trace.Tracer
	// Hints, when set, keeps each write a replica did not take, for
	// delivery when it is back (hinted handoff).
	Hints Hinter
	// ReadRepair is Blocking (default: linearizable quorum reads) or
	// Background (the replies' disagreement is repaired after answering:
	// faster on a diverged replica, but a later read may return an older
	// value than an earlier one).
	ReadRepair ReadRepairMode
	// SpeculativeAfter is the least time a read waits for a replica before
	// also asking the next owner; the observed p99 of replica reads is
	// used when it is longer. Zero: DefaultSpeculativeAfter.
	SpeculativeAfter time.Duration
}

// ReadRepairMode says when a read fixes the replicas it found lagging.
type ReadRepairMode string

const (
	// Blocking writes the newest version back to a quorum of owners
	// before the read answers (the second phase of the ABD register), so
	// no later read can return an older version.
	Blocking ReadRepairMode = "blocking"
	// Background answers first and repairs afterwards.
	Background ReadRepairMode = "background"
)

// ParseReadRepair accepts blocking or background.
func ParseReadRepair(s string) (ReadRepairMode, error) {
	switch m := ReadRepairMode(s); m {
	case Blocking, Background:
		return m, nil
	}
	return "", fmt.Errorf("read repair %q: want blocking or background", s)
}

// DefaultSpeculativeAfter is the floor of the speculative-read delay: a
// replica read on loopback or a LAN answers within a millisecond or two,
// so one that has not answered after 5ms is probably stalled.
const DefaultSpeculativeAfter = 5 * time.Millisecond

// Hinter stores a record for a replica that a write could not reach. Add
// must be safe for concurrent use and must not block on the replica.
type Hinter interface {
	Add(replica, id string, rec storage.Record)
}

// Coordinator runs client requests. It is safe for concurrent use. Calls
// that finish after a request was answered (the writes beyond the quorum,
// repairs) run until Close.
type Coordinator struct {
	o      Options
	base   context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	// repairSlots bounds concurrent background repairs; when full, a repair
	// is dropped (the next read or anti-entropy will find the lag again).
	repairSlots chan struct{}

	// fetchLatency tracks replica read latency for speculative reads.
	fetchLatency *latencyTracker

	view atomic.Pointer[ring.View]
	// viewMu is held shared by every write until it has its quorum, and
	// exclusively by SetView: when SetView returns, no write that routed
	// by an older view is still waiting for acknowledgements.
	viewMu sync.RWMutex
}

// ErrNoView: the node does not know the ring yet.
var ErrNoView = errors.New("replication: no ring yet")

// SetView switches the routing of later requests to v and waits until
// every write that routed by the previous view has its quorum. Migrations
// rely on this: after a node switches to a dual-ring view, every write it
// acknowledged on the old view is on a quorum of the old owners, where the
// transfer scan will find it.
func (c *Coordinator) SetView(v ring.View) {
	c.viewMu.Lock()
	c.view.Store(&v)
	c.viewMu.Unlock()
}

// View returns the current routing view (nil before the first SetView).
func (c *Coordinator) View() *ring.View { return c.view.Load() }

// New returns a coordinator. It starts no goroutine until a request does.
func New(o Options) *Coordinator {
	if o.ReplicaTimeout <= 0 {
		o.ReplicaTimeout = 5 * time.Second
	}
	if o.Metrics == nil {
		o.Metrics = NewMetrics(nil)
	}
	if o.ReadRepair == "" {
		o.ReadRepair = Blocking
	}
	if o.SpeculativeAfter <= 0 {
		o.SpeculativeAfter = DefaultSpeculativeAfter
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Coordinator{o: o, base: ctx, cancel: cancel, repairSlots: make(chan struct{}, 64), fetchLatency: newLatencyTracker()}
}

// Close cancels background calls and waits for them.
func (c *Coordinator) Close() {
	c.cancel()
	c.wg.Wait()
}

// Put writes data as the newest version of id and returns that version.
// The version is greater than the version of every write acknowledged
// before Put began, whatever the coordinators' clocks say: the
// coordinator first asks a quorum of owners which version they hold and
// stamps the write above the newest (the first phase of the ABD register),
// then writes it. A nil error means a quorum (the consistency level) holds
// this version or a newer, concurrent one.
func (c *Coordinator) Put(ctx context.Context, id string, data []byte, cl Consistency) (hlc.Version, error) {
	return c.writeNewest(ctx, id, func(v hlc.Version) storage.Record { return storage.NewRecord(data, v) }, orDefault(cl, c.o.WriteConsistency))
}

// Delete writes a tombstone as the newest version of id, as Put does.
func (c *Coordinator) Delete(ctx context.Context, id string, cl Consistency) (hlc.Version, error) {
	return c.writeNewest(ctx, id, storage.NewTombstone, orDefault(cl, c.o.WriteConsistency))
}

func (c *Coordinator) writeNewest(ctx context.Context, id string, build func(hlc.Version) storage.Record, cl Consistency) (hlc.Version, error) {
	// Stamping straight from the clock would be one round trip cheaper,
	// but a clock that is behind (or a tie) would version the write below
	// one already acknowledged, and re-stamping after the replicas refuse
	// it is not enough either: the refused first attempt may already be
	// visible at some replica, and the value would then appear, vanish
	// and appear again.
	if err := c.observeQuorumVersions(ctx, id, cl); err != nil {
		return hlc.Version{}, err
	}
	rec := build(hlc.Version{Timestamp: c.o.Clock.Now(), Node: c.o.Self})
	return rec.Version, c.write(ctx, id, rec, cl)
}

// observeQuorumVersions asks the owners (of both rings during a
// migration) for the version they hold of id, metadata only, and moves the
// clock past the newest once the consistency level has answered. Every
// write acknowledged before is held by a quorum, which intersects this
// one. Only as many owners are asked as the decision needs, this node
// first (no network hop); another is asked for each that fails or is slow.
func (c *Coordinator) observeQuorumVersions(ctx context.Context, id string, cl Consistency) error {
	v := c.view.Load()
	if v == nil {
		return fmt.Errorf("%w: %w", ErrUnavailable, ErrNoView)
	}
	old, pending := v.Owners(id)
	q := newQuorum(cl.Required, names(old), names(pending))
	ask := func(rctx context.Context, m ring.Member) outcome {
		meta, err := c.fetchMetaFrom(rctx, m, id)
		if errors.Is(err, storage.ErrNotFound) {
			err = nil
		}
		return outcome{member: m, held: meta.Version, err: err}
	}
	ok, errs, err := c.askQuorum(ctx, q, c.localFirst(unionMembers(old, pending)), ask, func(r outcome) error {
		if r.err == nil && !r.held.IsZero() {
			if err := c.o.Clock.Observe(r.held.Timestamp); err != nil {
				return fmt.Errorf("holds %s: %w", r.held, err)
			}
		}
		return r.err
	})
	switch {
	case err != nil:
		return fmt.Errorf("%w: write %q: %w", ErrUnavailable, id, err)
	case !ok:
		c.o.Metrics.QuorumFailures.WithLabelValues("write").Inc()
		return fmt.Errorf("%w: write %q at %s: too few owners told their version: %w", ErrUnavailable, id, cl, errors.Join(errs...))
	}
	return nil
}

// askQuorum runs ask for candidates in order until q is decided, keeping
// only as many calls in flight as could decide it if each counted: one
// more is started for each answer that judge refuses, and one more each
// time the answers are slower than the usual replica latency (a stalled
// replica must not hold the request until its timeout). judge returns nil
// for an answer that counts and the reason otherwise; err is the
// context's error if it ended first.
func (c *Coordinator) askQuorum(ctx context.Context, q *quorum, candidates []ring.Member, ask func(context.Context, ring.Member) outcome, judge func(outcome) error) (ok bool, errs []error, err error) {
	results := make(chan outcome, len(candidates))
	inflight := make(map[string]bool, len(candidates))
	next := 0
	launch := func() {
		m := candidates[next]
		next++
		inflight[m.Name] = true
		c.background(ctx, func(rctx context.Context) { results <- ask(rctx, m) })
	}
	slow := c.fetchLatency.threshold(c.o.SpeculativeAfter)
	speculate := time.NewTimer(slow)
	defer speculate.Stop()
	for {
		if done, ok := q.decided(); done {
			return ok, errs, nil
		}
		for next < len(candidates) && q.short(inflight) {
			launch()
		}
		if len(inflight) == 0 {
			return false, errs, nil // every candidate answered and q is still open: not members of its sets
		}
		select {
		case r := <-results:
			delete(inflight, r.member.Name)
			jerr := judge(r)
			if jerr != nil {
				errs = append(errs, fmt.Errorf("%s: %w", r.member.Name, jerr))
			}
			q.record(r.member.Name, jerr == nil)
		case <-speculate.C:
			if next < len(candidates) {
				c.o.Metrics.SpeculativeReads.Inc()
				launch()
			}
			speculate.Reset(slow)
		case <-ctx.Done():
			return false, errs, ctx.Err()
		}
	}
}

// awaitQuorum records the outcomes arriving on results in q until q is
// decided; judge returns nil for an outcome that counts and the reason
// otherwise. err is the context's error if it ended first.
func awaitQuorum(ctx context.Context, q *quorum, results <-chan outcome, judge func(outcome) error) (ok bool, errs []error, err error) {
	for {
		if done, ok := q.decided(); done {
			return ok, errs, nil
		}
		select {
		case r := <-results:
			jerr := judge(r)
			if jerr != nil {
				errs = append(errs, fmt.Errorf("%s: %w", r.member.Name, jerr))
			}
			q.record(r.member.Name, jerr == nil)
		case <-ctx.Done():
			return false, errs, ctx.Err()
		}
	}
}

func orDefault(cl, def Consistency) Consistency {
	if cl == "" {
		return def
	}
	return cl
}

type outcome struct {
	member ring.Member
	rec    storage.Record
	held   hlc.Version // writes: the version the replica holds afterwards
	// digest: rec carries the replica's version and no payload.
	digest bool
	err    error
}

// write sends rec to every owner and waits until the consistency level is
// reached or cannot be. A replica counts when it holds rec's version
// afterwards, or a newer one: after observeQuorumVersions a newer version
// can only come from a concurrent write, which may be ordered after this
// one (the Thomas write rule of the ABD register).
func (c *Coordinator) write(ctx context.Context, id string, rec storage.Record, cl Consistency) error {
	c.viewMu.RLock()
	defer c.viewMu.RUnlock()
	v := c.view.Load()
	if v == nil {
		return fmt.Errorf("%w: %w", ErrUnavailable, ErrNoView)
	}
	old, pending := v.Owners(id)
	q := newQuorum(cl.Required, names(old), names(pending))
	targets := unionMembers(old, pending)
	results := make(chan outcome, len(targets))
	for _, m := range targets {
		c.background(ctx, func(rctx context.Context) {
			held, err := c.applyTo(rctx, m, id, rec)
			if err != nil && m.Name != c.o.Self && c.o.Hints != nil {
				c.o.Hints.Add(m.Name, id, rec)
			}
			results <- outcome{member: m, held: held, err: err}
		})
	}
	ok, errs, err := awaitQuorum(ctx, q, results, func(r outcome) error {
		switch {
		case r.err != nil:
			return r.err
		case rec.Version.Newer(r.held):
			return fmt.Errorf("did not take version %s (holds %q)", rec.Version, r.held)
		case r.held != rec.Version:
			c.o.Metrics.Superseded.Inc()
		}
		return nil
	})
	switch {
	case err != nil:
		return fmt.Errorf("%w: write %q: %w", ErrUnavailable, id, err)
	case !ok:
		c.o.Metrics.QuorumFailures.WithLabelValues("write").Inc()
		return fmt.Errorf("%w: write %q at %s: %d of %d replicas did not take it: %w",
			ErrUnavailable, id, cl, len(errs), len(targets), errors.Join(errs...))
	}
	return nil
}

// Get returns the newest record of id among the replicas the consistency
// level requires; storage.ErrNotFound when that is nothing or a tombstone.
// At quorum and all, when the replies disagree, the newest version is
// written back to a quorum of owners before Get returns it (ReadRepair
// Blocking), so no read that starts later can return an older version.
func (c *Coordinator) Get(ctx context.Context, id string, cl Consistency) (storage.Record, error) {
	cl = orDefault(cl, c.o.ReadConsistency)
	v := c.view.Load()
	if v == nil {
		return storage.Record{}, fmt.Errorf("%w: %w", ErrUnavailable, ErrNoView)
	}
	old, pending := v.Owners(id)
	if v.Target != nil {
		return c.getMigrating(ctx, id, cl, old, pending)
	}
	need := cl.Required(len(old))
	if need == 0 {
		return storage.Record{}, fmt.Errorf("%w: no members in the ring", ErrUnavailable)
	}
	// Reads route by the committed ring, this node first when it is an
	// owner (no network hop); owners of the migration target are the
	// fallback when committed owners fail.
	candidates := c.localFirst(old)
	for _, m := range pending {
		if !containsMember(old, m.Name) {
			candidates = append(candidates, m)
		}
	}
	results := make(chan outcome, len(candidates))
	next, inflight := 0, 0
	// Digest reads: one replica sends the payload, the others only their
	// version; the payload moves once unless a digest shows a newer
	// version (fetched from that replica below). A payload read is asked
	// while none has succeeded and none is in flight.
	payloadOK, payloadInflight := false, 0
	launch := func() {
		m := candidates[next]
		next++
		inflight++
		digest := payloadOK || payloadInflight > 0
		if !digest {
			payloadInflight++
		}
		c.background(ctx, func(rctx context.Context) {
			if digest {
				results <- c.digestFrom(rctx, m, id)
				return
			}
			rec, err := c.fetchFrom(rctx, m, id)
			results <- outcome{member: m, rec: rec, err: err}
		})
	}
	for next < need && next < len(candidates) {
		launch()
	}
	// A replica that is slow to answer (paused, overloaded, partitioned
	// without a reset) must not hold the read until its timeout: past the
	// usual latency the next owner is asked too.
	speculate := time.NewTimer(c.fetchLatency.threshold(c.o.SpeculativeAfter))
	defer speculate.Stop()
	var got []outcome
	var errs []error
	for len(got) < need {
		if inflight == 0 {
			c.o.Metrics.QuorumFailures.WithLabelValues("read").Inc()
			// Too few replies to answer, but a corrupt or lagging copy
			// among them can still be fixed from the newest one read
			// (apply-if-newer: a repair never moves a replica backwards).
			c.repairLagging(ctx, id, newestOf(withPayload(got)), got)
			return storage.Record{}, fmt.Errorf("%w: read %q at %s: %d of %d needed replies: %w",
				ErrUnavailable, id, cl, len(got), need, errors.Join(errs...))
		}
		select {
		case r := <-results:
			inflight--
			if !r.digest {
				payloadInflight--
				payloadOK = payloadOK || r.err == nil
			}
			if r.err == nil && !r.rec.Version.IsZero() {
				if err := c.o.Clock.Observe(r.rec.Version.Timestamp); err != nil {
					r.err = fmt.Errorf("replica holds %s: %w", r.rec.Version, err)
				}
			}
			if r.err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", r.member.Name, r.err))
				if errors.Is(r.err, storage.ErrCorrupt) {
					// Treated as a missing copy: the repair below rewrites it.
					got = append(got, outcome{member: r.member, err: r.err})
					need++
				}
				if next < len(candidates) && len(got)+inflight < need {
					c.o.Metrics.Fallbacks.Inc()
					launch()
				}
				continue
			}
			got = append(got, r)
		case <-speculate.C:
			if next < len(candidates) && len(got) < need {
				c.o.Metrics.SpeculativeReads.Inc()
				launch()
			}
		case <-ctx.Done():
			return storage.Record{}, fmt.Errorf("%w: read %q: %w", ErrUnavailable, id, ctx.Err())
		}
	}
	var unasked []ring.Member
	if next < len(old) && (cl == All || rand.Float64() < c.o.ReadRepairChance) {
		unasked = candidates[next:len(old)]
	}
	got, err := c.payloadOfNewest(ctx, id, got)
	if err != nil {
		return storage.Record{}, err
	}
	return c.answer(ctx, id, cl, got, unasked, old, pending)
}

// digestFrom reads m's version of id without the payload, as an outcome
// of a digest read.
func (c *Coordinator) digestFrom(ctx context.Context, m ring.Member, id string) (r outcome) {
	ctx, end := c.replicaSpan(ctx, "replica.fetch_digest", m, id)
	defer func() { end(r.err) }()
	var meta storage.Meta
	var err error
	if m.Name == c.o.Self {
		var rec storage.Record
		rec, err = c.o.Engine.Get(id)
		meta = rec.Meta()
	} else {
		start := time.Now()
		meta, err = c.o.Peers.FetchDigest(ctx, m.Addr, id)
		if err == nil || errors.Is(err, storage.ErrNotFound) {
			c.fetchLatency.observe(time.Since(start))
		}
	}
	if errors.Is(err, storage.ErrNotFound) {
		return outcome{member: m, digest: true}
	}
	rec := storage.Record{Version: meta.Version, Checksum: meta.Checksum, Tombstone: meta.Tombstone, StaleSince: meta.StaleSince}
	return outcome{member: m, rec: rec, digest: true, err: err}
}

// payloadOfNewest makes sure the newest reply of a digest read carries its
// payload: when a digest reply is newer than every payload read, the
// payload is fetched from that replica. The replica may hold a newer
// version by then (a concurrent write), which is as good an answer: it
// replaces the digest. A failed fetch fails the read (nothing is
// answered that the quorum did not vouch for).
func (c *Coordinator) payloadOfNewest(ctx context.Context, id string, got []outcome) ([]outcome, error) {
	i := newestIndex(got)
	if i < 0 || !got[i].digest || got[i].rec.Tombstone {
		return got, nil
	}
	c.o.Metrics.DigestMismatches.Inc()
	r := got[i]
	rec, err := c.fetchFrom(ctx, r.member, id)
	if err == nil && r.rec.Version.Newer(rec.Version) {
		err = fmt.Errorf("answered version %s, then sent %s", r.rec.Version, rec.Version)
	}
	if err != nil {
		c.o.Metrics.QuorumFailures.WithLabelValues("read").Inc()
		return nil, fmt.Errorf("%w: read %q: the replica with the newest version failed to send it: %s: %w", ErrUnavailable, id, r.member.Name, err)
	}
	got[i] = outcome{member: r.member, rec: rec}
	return got, nil
}

// answer picks the newest of the replies, makes it durable at the
// consistency level when the replies disagree (or repairs in the
// background, at one or with ReadRepair Background), probes the owners in
// unasked, and maps "nothing" and tombstones to storage.ErrNotFound.
func (c *Coordinator) answer(ctx context.Context, id string, cl Consistency, got []outcome, unasked, old, pending []ring.Member) (storage.Record, error) {
	newest := newestOf(got)
	if c.o.ReadRepair == Blocking && cl != One && disagree(got, newest) && !newest.Version.IsZero() {
		if err := c.writeBack(ctx, id, cl, newest, got, old, pending); err != nil {
			return storage.Record{}, err
		}
	} else {
		c.repairLagging(ctx, id, newest, got)
	}
	if len(unasked) > 0 {
		c.probeAndRepair(ctx, id, newest, unasked)
	}
	if newest.Version.IsZero() || newest.Tombstone {
		return storage.Record{}, storage.ErrNotFound
	}
	return newest, nil
}

// disagree reports whether some reply is not the newest version.
func disagree(got []outcome, newest storage.Record) bool {
	for _, r := range got {
		if r.err != nil || r.rec.Version != newest.Version {
			return true
		}
	}
	return false
}

// writeBack stores newest on a quorum of owners (of both rings during a
// migration) before a read returns it: the replies that already hold it
// count, the lagging ones are rewritten, and owners the read did not ask
// stand in for rewrites that fail. A replica that holds an even newer
// version counts too: a later read sees at least newest there.
func (c *Coordinator) writeBack(ctx context.Context, id string, cl Consistency, newest storage.Record, got []outcome, old, pending []ring.Member) error {
	q := newQuorum(cl.Required, names(old), names(pending))
	asked := make(map[string]bool, len(got))
	var lagging []outcome
	for _, r := range got {
		asked[r.member.Name] = true
		if r.err == nil && !newest.Version.Newer(r.rec.Version) {
			q.record(r.member.Name, true)
			continue
		}
		lagging = append(lagging, r)
	}
	var spare []ring.Member
	for _, m := range c.localFirst(unionMembers(old, pending)) {
		if !asked[m.Name] {
			spare = append(spare, m)
		}
	}
	results := make(chan outcome, len(lagging)+len(spare))
	inflight := 0
	send := func(m ring.Member, corrupt bool) {
		inflight++
		c.background(ctx, func(rctx context.Context) {
			results <- outcome{member: m, err: c.repairReplica(rctx, m, id, newest, corrupt)}
		})
	}
	for _, r := range lagging {
		send(r.member, errors.Is(r.err, storage.ErrCorrupt))
	}
	// A rewrite that is slow (a stalled replica) is covered by the next
	// spare owner after the usual replica latency, as reads are.
	slow := time.NewTicker(c.fetchLatency.threshold(c.o.SpeculativeAfter))
	defer slow.Stop()
	var errs []error
	for {
		done, ok := q.decided()
		if done && ok {
			c.o.Metrics.WriteBacks.WithLabelValues("ok").Inc()
			return nil
		}
		if inflight == 0 && len(spare) > 0 && !done {
			send(spare[0], false)
			spare = spare[1:]
			continue
		}
		if done || inflight == 0 {
			c.o.Metrics.WriteBacks.WithLabelValues("failed").Inc()
			c.o.Metrics.QuorumFailures.WithLabelValues("read").Inc()
			return fmt.Errorf("%w: read %q at %s: replicas disagree and the newest version %s could not be written back to a quorum: %w",
				ErrUnavailable, id, cl, newest.Version, errors.Join(errs...))
		}
		select {
		case r := <-results:
			inflight--
			q.record(r.member.Name, r.err == nil)
			if r.err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", r.member.Name, r.err))
			}
		case <-slow.C:
			if len(spare) > 0 {
				c.o.Metrics.SpeculativeReads.Inc()
				send(spare[0], false)
				spare = spare[1:]
			}
		case <-ctx.Done():
			return fmt.Errorf("%w: read %q: %w", ErrUnavailable, id, ctx.Err())
		}
	}
}

// getMigrating reads while a migration runs: it asks the owners of both
// rings at once and needs the consistency level in each, so it sees every
// write acknowledged on either side of the ring swap (writes made by a
// node that has already swapped reach only the new owners).
func (c *Coordinator) getMigrating(ctx context.Context, id string, cl Consistency, old, pending []ring.Member) (storage.Record, error) {
	q := newQuorum(cl.Required, names(old), names(pending))
	ask := func(rctx context.Context, m ring.Member) outcome {
		rec, err := c.fetchFrom(rctx, m, id)
		return outcome{member: m, rec: rec, err: err}
	}
	var got []outcome
	ok, errs, err := c.askQuorum(ctx, q, c.localFirst(unionMembers(old, pending)), ask, func(r outcome) error {
		if r.err == nil && !r.rec.Version.IsZero() {
			if err := c.o.Clock.Observe(r.rec.Version.Timestamp); err != nil {
				return fmt.Errorf("replica holds %s: %w", r.rec.Version, err)
			}
		}
		if r.err == nil {
			got = append(got, r)
		}
		return r.err
	})
	switch {
	case err != nil:
		return storage.Record{}, fmt.Errorf("%w: read %q: %w", ErrUnavailable, id, err)
	case !ok:
		c.o.Metrics.QuorumFailures.WithLabelValues("read").Inc()
		return storage.Record{}, fmt.Errorf("%w: read %q during migration at %s: %w", ErrUnavailable, id, cl, errors.Join(errs...))
	}
	return c.answer(ctx, id, cl, got, nil, old, pending)
}

// withPayload returns the replies that carry a whole record: payload
// reads, and digests of tombstones (which have no payload).
func withPayload(rs []outcome) []outcome {
	var out []outcome
	for _, r := range rs {
		if !r.digest || r.rec.Tombstone {
			out = append(out, r)
		}
	}
	return out
}

// newestOf returns the newest record among the replies (the zero record
// when none holds one).
func newestOf(rs []outcome) storage.Record {
	if i := newestIndex(rs); i >= 0 {
		return rs[i].rec
	}
	return storage.Record{}
}

// newestIndex returns the index of the newest reply, preferring one with
// its payload to a digest of the same version; -1 when no reply holds a
// record.
func newestIndex(rs []outcome) int {
	i := -1
	for j, r := range rs {
		if r.err != nil || r.rec.Version.IsZero() {
			continue
		}
		if i < 0 || r.rec.Version.Newer(rs[i].rec.Version) || (r.rec.Version == rs[i].rec.Version && rs[i].digest && !r.digest) {
			i = j
		}
	}
	return i
}

// repairLagging sends the newest record to every replica that answered
// with an older version, nothing, or a corrupt copy.
func (c *Coordinator) repairLagging(ctx context.Context, id string, newest storage.Record, got []outcome) {
	if newest.Version.IsZero() {
		return
	}
	for _, r := range got {
		if r.err == nil && !newest.Version.Newer(r.rec.Version) {
			continue
		}
		c.repair(ctx, r.member, id, newest, errors.Is(r.err, storage.ErrCorrupt))
	}
}

// probeAndRepair asks owners that were not needed for the quorum for their
// version and repairs those that lag.
func (c *Coordinator) probeAndRepair(ctx context.Context, id string, newest storage.Record, members []ring.Member) {
	if newest.Version.IsZero() {
		return
	}
	for _, m := range members {
		c.background(ctx, func(rctx context.Context) {
			meta, err := c.fetchMetaFrom(rctx, m, id)
			switch {
			case errors.Is(err, storage.ErrNotFound), err == nil && newest.Version.Newer(meta.Version):
				c.repair(rctx, m, id, newest, false)
			case errors.Is(err, storage.ErrCorrupt):
				c.repair(rctx, m, id, newest, true)
			}
		})
	}
}

func (c *Coordinator) repair(ctx context.Context, m ring.Member, id string, newest storage.Record, corrupt bool) {
	select {
	case c.repairSlots <- struct{}{}:
	default:
		c.o.Metrics.RepairsDropped.Inc()
		return
	}
	c.background(ctx, func(rctx context.Context) {
		defer func() { <-c.repairSlots }()
		_ = c.repairReplica(rctx, m, id, newest, corrupt)
	})
}

// repairReplica rewrites one replica with newest and counts the outcome.
// It succeeds when the replica holds newest or a newer version afterwards.
func (c *Coordinator) repairReplica(ctx context.Context, m ring.Member, id string, newest storage.Record, corrupt bool) error {
	var err error
	if corrupt && m.Name == c.o.Self {
		err = c.replaceCorrupt(id, newest)
	} else {
		var held hlc.Version
		held, err = c.applyTo(ctx, m, id, newest)
		if err == nil && newest.Version.Newer(held) {
			err = fmt.Errorf("replica did not take %s and holds %q", newest.Version, held)
		}
	}
	if err != nil {
		c.o.Metrics.Repairs.WithLabelValues("failed").Inc()
		c.o.Logger.Warn().Ctx(ctx).Err(err).Str("block_id", id).Str("replica", m.Name).Msg("read repair failed")
		return err
	}
	c.o.Metrics.Repairs.WithLabelValues("ok").Inc()
	c.o.Logger.Debug().Ctx(ctx).Str("block_id", id).Str("replica", m.Name).Str("version", newest.Version.String()).Msg("read repair")
	return nil
}

// replaceCorrupt drops a local copy whose checksum failed and stores the
// good one. Apply alone would refuse it when the versions are equal.
func (c *Coordinator) replaceCorrupt(id string, good storage.Record) error {
	if meta, err := c.o.Engine.GetMeta(id); err == nil && !good.Version.Newer(meta.Version) {
		if _, err := c.o.Engine.Remove(id, meta.Version); err != nil {
			return err
		}
	}
	_, err := c.o.Engine.Apply(id, good)
	return err
}

// applyTo stores rec on member m and returns the version m holds
// afterwards (see Peers.Apply).
func (c *Coordinator) applyTo(ctx context.Context, m ring.Member, id string, rec storage.Record) (held hlc.Version, err error) {
	ctx, end := c.replicaSpan(ctx, "replica.apply", m, id)
	defer func() { end(err) }()
	if m.Name != c.o.Self {
		return c.o.Peers.Apply(ctx, m.Addr, id, rec)
	}
	applied, err := c.o.Engine.Apply(id, rec)
	if err != nil || applied {
		return rec.Version, err
	}
	meta, err := c.o.Engine.GetMeta(id)
	if err != nil {
		return hlc.Version{}, fmt.Errorf("did not take %s and its own copy is unreadable: %w", rec.Version, err)
	}
	return meta.Version, nil
}

func (c *Coordinator) fetchFrom(ctx context.Context, m ring.Member, id string) (rec storage.Record, err error) {
	ctx, end := c.replicaSpan(ctx, "replica.fetch", m, id)
	defer func() { end(err) }()
	if m.Name == c.o.Self {
		rec, err = c.o.Engine.Get(id)
	} else {
		start := time.Now()
		rec, err = c.o.Peers.Fetch(ctx, m.Addr, id)
		if err == nil || errors.Is(err, storage.ErrNotFound) {
			c.fetchLatency.observe(time.Since(start))
		}
	}
	if errors.Is(err, storage.ErrNotFound) {
		return storage.Record{}, nil
	}
	return rec, err
}

func (c *Coordinator) fetchMetaFrom(ctx context.Context, m ring.Member, id string) (meta storage.Meta, err error) {
	ctx, end := c.replicaSpan(ctx, "replica.fetch_meta", m, id)
	defer func() {
		if errors.Is(err, storage.ErrNotFound) {
			end(nil)
			return
		}
		end(err)
	}()
	if m.Name == c.o.Self {
		return c.o.Engine.GetMeta(id)
	}
	return c.o.Peers.FetchMeta(ctx, m.Addr, id)
}

// background runs fn in a tracked goroutine with a context that keeps the
// request's values (trace span) but not its cancellation: a replica call
// started for a request finishes even after the client has its answer, so
// every owner converges. Close cancels it.
func (c *Coordinator) background(ctx context.Context, fn func(context.Context)) {
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), c.o.ReplicaTimeout)
	stop := context.AfterFunc(c.base, cancel)
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		defer stop()
		defer cancel()
		fn(rctx)
	}()
}

func (c *Coordinator) localFirst(ms []ring.Member) []ring.Member {
	out := make([]ring.Member, 0, len(ms)+3)
	for _, m := range ms {
		if m.Name == c.o.Self {
			out = append(out, m)
		}
	}
	for _, m := range ms {
		if m.Name != c.o.Self {
			out = append(out, m)
		}
	}
	return out
}

func names(ms []ring.Member) []string {
	if len(ms) == 0 {
		return nil
	}
	out := make([]string, len(ms))
	for i, m := range ms {
		out[i] = m.Name
	}
	return out
}

func unionMembers(a, b []ring.Member) []ring.Member {
	out := append([]ring.Member(nil), a...)
	for _, m := range b {
		if !containsMember(out, m.Name) {
			out = append(out, m)
		}
	}
	return out
}

func containsMember(ms []ring.Member, name string) bool {
	for _, m := range ms {
		if m.Name == name {
			return true
		}
	}
	return false
}
