package migration

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"

	"github.com/goblocks/goblocks/node/adminapi"
	"github.com/goblocks/goblocks/node/membership"
	"github.com/goblocks/goblocks/node/pace"
	"github.com/goblocks/goblocks/node/ring"
	"github.com/goblocks/goblocks/node/storage"
)

// Options configure a Driver.
type Options struct {
	Self    membership.Member
	RF      int
	Store   membership.Store
	Engine  storage.Engine
	Sender  Sender
	SetView func(ring.View) // blocks until old-view writes finished
	// StaleGrace keeps moved-away copies readable; TombstoneGrace keeps
	// tombstones (longer: a tombstone must outlive any lagging copy).
	StaleGrace, TombstoneGrace time.Duration
	// GCInterval is how often the reconcile/GC pass runs.
	GCInterval time.Duration
	// TransferRate bounds this node's outgoing migration traffic in
	// bytes/s (0: unlimited).
	TransferRate int64
	Logger       zerolog.Logger
	Metrics      *Metrics
	// SessionValid, when set, reports whether the coordination session is
	// certainly alive while disconnected (see zk.Store.SessionValid): the
	// node then keeps serving on its committed ring. Nil: serve only while
	// connected.
	SessionValid func() error
}

// Driver runs this node's part of membership and migration. It is safe
// for concurrent use; Run drives it.
type Driver struct {
	o    Options
	kick chan struct{}
	gc   chan struct{}
	left chan struct{}

	leaving  atomic.Bool
	aborted  atomic.Int64
	leftOnce sync.Once

	transferDone chan string
	// transfers tracks the streaming goroutines so Run returns only after
	// the last one stopped reading the engine (the app closes it next).
	transfers sync.WaitGroup

	mu             sync.Mutex
	snap           membership.Snapshot
	local          Local
	status         Status
	view           ring.View
	hasView        bool
	progress       *Progress
	roundStart     time.Time
	roundID        string
	transferCancel context.CancelFunc
	lastGC         GCStats
	// staleNow is lastGC.Stale moved by the running pass's changes.
	staleNow   atomic.Int64
	lastRound  RoundSummary
	recvBlocks int64
	recvBytes  int64
}

// The status types are the operator contract's (package adminapi).
type (
	ClusterStatus     = adminapi.ClusterStatus
	ParticipantStatus = adminapi.ParticipantStatus
	TransferStatus    = adminapi.TransferStatus
	RoundSummary      = adminapi.RoundSummary
)

// New returns a driver; Run starts it.
func New(o Options) *Driver {
	if o.Metrics == nil {
		o.Metrics = NewMetrics(nil)
	}
	if o.GCInterval <= 0 {
		o.GCInterval = time.Minute
	}
	return &Driver{
		o: o, kick: make(chan struct{}, 1), gc: make(chan struct{}, 1), left: make(chan struct{}),
		transferDone: make(chan string, 4),
		local:        Local{Self: o.Self.Name, RF: o.RF},
	}
}

func signal(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

func (d *Driver) publish(s membership.Snapshot) {
	d.mu.Lock()
	d.snap = s
	d.mu.Unlock()
	signal(d.kick)
}

// Run drives the node until ctx ends.
func (d *Driver) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	var storeErr error
	wg.Add(2)
	go func() { defer wg.Done(); storeErr = d.o.Store.Run(ctx, d.publish) }()
	go func() { defer wg.Done(); d.gcLoop(ctx) }()
	for {
		select {
		case <-ctx.Done():
			d.mu.Lock()
			if d.transferCancel != nil {
				d.transferCancel()
			}
			d.mu.Unlock()
			d.transfers.Wait()
			wg.Wait()
			if storeErr != nil {
				return fmt.Errorf("membership: %w", storeErr)
			}
			return nil
		case <-d.kick:
		case round := <-d.transferDone:
			d.mu.Lock()
			if round == d.local.TransferRound {
				d.local.TransferDone = true
			}
			d.mu.Unlock()
		}
		d.step(ctx)
	}
}

// ErrNoRing is Ready's answer before the first committed ring arrived.
var ErrNoRing = errors.New("migration: no committed ring yet")

// Ready reports whether the node may coordinate requests: it has a session
// and routes by a committed ring. The error says why not.
func (d *Driver) Ready() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if !d.snap.Connected {
		// A ZooKeeper restart or a short partition from it changes no
		// membership: the ring stays valid until the session could have
		// expired, and no ring change can commit without this node before.
		if d.o.SessionValid == nil {
			return membership.ErrNoSession
		}
		if err := d.o.SessionValid(); err != nil {
			return err
		}
	}
	if !d.hasView {
		return ErrNoRing
	}
	return nil
}

// Leave marks this node as leaving and returns once the ring that removes
// it is committed (the node has handed over its data) or ctx ends.
func (d *Driver) Leave(ctx context.Context) error {
	d.leaving.Store(true)
	self := d.o.Self
	self.Leaving = true
	for {
		err := d.o.Store.SetMember(self)
		if err == nil {
			break
		}
		d.o.Logger.Warn().Err(err).Msg("announce leave")
		if err := pace.Sleep(ctx, 200*time.Millisecond); err != nil {
			return err
		}
	}
	d.o.Logger.Info().Msg("leaving: handing over data before exit")
	signal(d.kick)
	select {
	case <-d.left:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func newRoundID() string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func (d *Driver) step(ctx context.Context) {
	d.mu.Lock()
	snap := d.snap
	d.local.Leaving = d.leaving.Load()
	local := d.local
	d.mu.Unlock()

	acts, st := Decide(snap, local, newRoundID)
	d.mu.Lock()
	d.status = st
	d.mu.Unlock()
	d.updateGauges(snap, st)
	for _, a := range acts {
		if err := d.perform(ctx, snap, a); err != nil {
			if errors.Is(err, membership.ErrExists) || errors.Is(err, membership.ErrConflict) {
				d.o.Logger.Debug().Err(err).Str("action", a.Kind.String()).Msg("lost a race; re-reading")
			} else {
				d.o.Logger.Warn().Err(err).Str("action", a.Kind.String()).Msg("migration step failed")
			}
			return
		}
		if a.Kind == SwapRing || a.Kind == SwitchView {
			// Only local state changed: no watch will fire, so decide
			// again with it.
			signal(d.kick)
		}
	}
}

func (d *Driver) buildRing(ms []membership.Member) (*ring.Ring, error) { return ringOf(ms) }

func (d *Driver) perform(ctx context.Context, snap membership.Snapshot, a Action) error {
	log := d.o.Logger.With().Str("action", a.Kind.String()).Logger()
	switch a.Kind {
	case InitRing:
		log.Info().Strs("members", membership.Names(a.Ring.Members)).Msg("creating the first ring")
		return d.o.Store.InitRing(a.Ring)
	case SwapRing:
		r, err := d.buildRing(a.Ring.Members)
		if err != nil {
			return err
		}
		d.mu.Lock()
		if d.transferCancel != nil {
			d.transferCancel()
			d.transferCancel = nil
		}
		prevEpoch := d.local.ViewEpoch
		roundID, started, prog := d.roundID, d.roundStart, d.progress
		d.mu.Unlock()
		v := ring.View{Current: r, RF: d.o.RF}
		d.o.SetView(v)
		d.mu.Lock()
		d.view, d.hasView = v, true
		d.local.ViewEpoch, d.local.ViewRound = a.Ring.Epoch, ""
		d.local.TransferRound, d.local.TransferDone = "", false
		d.roundID = ""
		// A joining node (no previous view) that took part in the round saw
		// it end too.
		if roundID != "" && a.Ring.Epoch > prevEpoch {
			sum := RoundSummary{ID: roundID, Epoch: a.Ring.Epoch, Seconds: time.Since(started).Seconds()}
			if prog != nil {
				sum.SentBlocks, sum.SentBytes = prog.SentBlocks.Load(), prog.SentBytes.Load()
			}
			d.lastRound = sum
			d.o.Metrics.RoundDuration.Observe(sum.Seconds)
			d.o.Metrics.Rounds.WithLabelValues("committed").Inc()
			log.Info().Str("round", sum.ID).Int64("epoch", sum.Epoch).Float64("seconds", sum.Seconds).
				Int64("sent_blocks", sum.SentBlocks).Float64("sent_mb", float64(sum.SentBytes)/1e6).
				Msg("Migration complete: swapped to the new ring")
		} else {
			log.Info().Int64("epoch", a.Ring.Epoch).Strs("members", membership.Names(a.Ring.Members)).Msg("routing by the committed ring")
		}
		d.mu.Unlock()
		d.o.Metrics.RingEpoch.Set(float64(a.Ring.Epoch))
		d.o.Metrics.RingMembers.Set(float64(len(a.Ring.Members)))
		d.o.Metrics.RingOwnedShare.Set(r.Shares(d.o.RF)[d.o.Self.Name])
		signal(d.gc)
		return nil
	case CreateBarrier:
		if err := d.o.Store.CreateBarrier(a.Barrier, a.Ring); err != nil {
			return err
		}
		log.Info().Str("round", a.Barrier.ID).Strs("target", membership.Names(a.Barrier.Target)).
			Strs("participants", a.Barrier.Participants).Msg("Migration barrier created")
		return nil
	case SwitchView:
		d.mu.Lock()
		cur := d.view.Current
		d.mu.Unlock()
		if cur == nil {
			return errors.New("no committed ring to migrate from")
		}
		target, err := d.buildRing(a.Barrier.Target)
		if err != nil {
			return err
		}
		v := ring.View{Current: cur, Target: target, RF: d.o.RF}
		d.o.SetView(v) // waits for old-view writes
		d.mu.Lock()
		d.view = v
		d.local.ViewRound = a.Barrier.ID
		d.roundID, d.roundStart, d.progress = a.Barrier.ID, time.Now(), &Progress{}
		// What this round receives: transfers start only once every
		// participant is in the dual view, so no batch of it came before.
		d.recvBlocks, d.recvBytes = 0, 0
		d.mu.Unlock()
		log.Info().Str("round", a.Barrier.ID).Msg("Migration started: writing to old and new owners")
		return nil
	case Register:
		return d.o.Store.SetParticipant(a.Barrier, membership.Participant{Name: d.o.Self.Name})
	case StartTransfer:
		d.startTransfer(ctx, a.Barrier)
		return nil
	case MarkReady:
		d.mu.Lock()
		p := d.progress
		d.mu.Unlock()
		part := membership.Participant{Name: d.o.Self.Name, Ready: true}
		if p != nil {
			part.SentBlocks, part.SentBytes, part.PlannedBlocks = p.SentBlocks.Load(), p.SentBytes.Load(), p.PlannedBlocks.Load()
		}
		log.Info().Str("round", a.Barrier.ID).Int64("sent_blocks", part.SentBlocks).Msg("transfer complete: ready")
		return d.o.Store.SetParticipant(a.Barrier, part)
	case Commit:
		if err := d.o.Store.Commit(a.Barrier, a.Ring); err != nil {
			return err
		}
		log.Info().Str("round", a.Barrier.ID).Int64("epoch", a.Ring.Epoch).Msg("all participants ready: barrier deleted, ring committed")
		return nil
	case Abort:
		if err := d.o.Store.Abort(a.Barrier); err != nil {
			return err
		}
		d.o.Metrics.Rounds.WithLabelValues("aborted").Inc()
		d.aborted.Add(1)
		log.Warn().Str("round", a.Barrier.ID).Msg("Migration aborted: a participant left; restarting from the live members")
		return nil
	case LeaveDone:
		d.leftOnce.Do(func() { close(d.left) })
		return nil
	}
	return fmt.Errorf("unknown action %v", a.Kind)
}

func (d *Driver) startTransfer(ctx context.Context, b membership.Barrier) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.transferCancel != nil {
		d.transferCancel()
	}
	tctx, cancel := context.WithCancel(ctx)
	d.transferCancel = cancel
	d.local.TransferRound, d.local.TransferDone = b.ID, false
	old, target, p := d.view.Current, d.view.Target, d.progress
	if p == nil {
		p = &Progress{}
		d.progress = p
	}
	log := d.o.Logger.With().Str("round", b.ID).Logger()
	d.transfers.Add(1)
	go func() {
		defer d.transfers.Done()
		start := time.Now()
		sentBlocks, sentBytes := p.SentBlocks.Load(), p.SentBytes.Load()
		err := transfer(tctx, d.o.Engine, old, target, d.o.RF, d.o.Self.Name, b.Participants, d.o.Sender, d.o.TransferRate, p)
		blocks, bytes := p.SentBlocks.Load()-sentBlocks, p.SentBytes.Load()-sentBytes
		d.o.Metrics.SentBlocks.Add(float64(blocks))
		d.o.Metrics.SentBytes.Add(float64(bytes))
		if err != nil {
			log.Warn().Err(err).Msg("transfer stopped")
			return
		}
		secs := time.Since(start).Seconds()
		log.Info().Int64("blocks", blocks).Float64("mb", float64(bytes)/1e6).Float64("seconds", secs).
			Float64("mb_per_s", float64(bytes)/1e6/max(secs, 1e-9)).Msg("Migration transfer finished")
		select {
		case d.transferDone <- b.ID:
		case <-tctx.Done():
		}
	}()
}

func (d *Driver) updateGauges(s membership.Snapshot, st Status) {
	m := d.o.Metrics
	m.Migrating.Set(boolFloat(st.Migrating))
	m.Pending.Set(boolFloat(st.Pending))
	m.SessionConnected.Set(boolFloat(s.Connected))
	if s.Barrier != nil {
		ready := 0
		for _, p := range s.Participants {
			if p.Ready {
				ready++
			}
		}
		m.Participants.Set(float64(len(s.Barrier.Participants)))
		m.ParticipantsReady.Set(float64(ready))
	} else {
		m.Participants.Set(0)
		m.ParticipantsReady.Set(0)
	}
	d.mu.Lock()
	if d.progress != nil && st.Migrating {
		m.TransferPlanned.Set(float64(d.progress.PlannedBlocks.Load()))
	} else {
		m.TransferPlanned.Set(0)
	}
	d.mu.Unlock()
}

func boolFloat(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// gcLoop reconciles local copies with the view after every ring swap (so
// moved-away copies turn stale at the swap), every GCInterval, and when
// the first stale copy reaches the grace period (so it is collected then,
// not up to a GCInterval later).
//
// The periodic pass reads every record (tombstones expire anywhere). The
// pass after a swap reads only the arcs where this node's ownership
// changed since the view of the previous pass, and the pass at a grace
// expiry only the arcs such swaps left stale copies in: the cost of a
// rebalance follows the data it moves, not the data stored.
func (d *Driver) gcLoop(ctx context.Context) {
	t := time.NewTicker(d.o.GCInterval)
	defer t.Stop()
	expiry := time.NewTimer(time.Hour)
	expiry.Stop()
	defer expiry.Stop()
	scope := gcScope{self: d.o.Self.Name}
	var expiryAt time.Time // when expiry fires; zero when stopped
	for {
		kind := periodicPass
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-d.gc:
			kind = swapPass
		case <-expiry.C:
			kind, expiryAt = expiryPass, time.Time{}
		}
		d.mu.Lock()
		v, ok := d.view, d.hasView
		d.mu.Unlock()
		if !ok {
			continue
		}
		arcs := scope.arcs(kind, v)
		start := time.Now()
		st, next, staleBefore, err := reconcile(ctx, d.o.Engine, v, d.o.Self.Name, start, d.o.StaleGrace, d.o.TombstoneGrace, arcs, d.gcStill(v),
			func(delta int64) { d.staleNow.Add(delta); d.o.Metrics.StaleBlocks.Add(float64(delta)) })
		st.Pass, st.Seconds = kind.String(), time.Since(start).Seconds()
		d.o.Metrics.GCSeconds.WithLabelValues(st.Pass).Observe(st.Seconds)
		scope.done(kind, v, arcs, st.Stale, err)
		if arcs != nil {
			// The store's total: what the arcs held before, replaced by
			// what they hold now.
			d.mu.Lock()
			st.Stale = max(d.lastGC.Stale-staleBefore+st.Stale, 0)
			d.mu.Unlock()
		}
		if !next.IsZero() && (expiryAt.IsZero() || next.Before(expiryAt)) {
			// A little past the expiry, so the copy is past the grace when
			// the pass reads the clock; never a busy loop.
			expiryAt = next
			expiry.Reset(max(time.Until(next), 0) + gcExpirySlack)
		}
		d.o.Metrics.GCRuns.Inc()
		d.o.Metrics.StaleBlocks.Set(float64(st.Stale))
		d.o.Metrics.Collected.Add(float64(st.Collected))
		d.o.Metrics.TombstonesPurged.Add(float64(st.TombstonesPurged))
		switch {
		case errors.Is(err, errViewChanged):
			d.o.Logger.Info().Str("pass", st.Pass).Int64("scanned", st.Scanned).Msg("garbage collection pass stopped: the view changed; the next pass reads every record")
		case err != nil:
			d.o.Logger.Warn().Err(err).Msg("garbage collection pass failed")
		}
		if st.MarkedStale+st.Collected+st.TombstonesPurged+st.Reowned > 0 {
			d.o.Logger.Info().Int64("marked_stale", st.MarkedStale).Int64("collected", st.Collected).
				Int64("reowned", st.Reowned).Int64("tombstones_purged", st.TombstonesPurged).Int64("stale", st.Stale).
				Str("pass", st.Pass).Int64("scanned", st.Scanned).Float64("seconds", st.Seconds).
				Msg("Garbage collection pass")
		}
		d.mu.Lock()
		d.lastGC = st
		d.staleNow.Store(st.Stale)
		d.mu.Unlock()
	}
}

// StaleNow is the number of stale copies this node holds: the last GC
// pass's count, moved by each change of the pass running now.
func (d *Driver) StaleNow() int64 { return max(d.staleNow.Load(), 0) }

// gcStill is reconcile's check, before each batch, that v is still the
// view. No lock is held through the commit: a view change must never wait
// for a GC batch (which can wait long in the store's commit queue under
// load), so a batch decided just before a change can still be committed
// just after it. That window is one batch, against a whole pass before.
func (d *Driver) gcStill(v ring.View) func() (func(), bool) {
	return func() (func(), bool) {
		d.mu.Lock()
		same := d.hasView && d.view.Current == v.Current && d.view.Target == v.Target
		d.mu.Unlock()
		return func() {}, same
	}
}

// gcExpirySlack is how long after a stale copy's grace period ends the
// pass that collects it runs.
const gcExpirySlack = 100 * time.Millisecond

// Received counts blocks that arrived by migration (for the status).
func (d *Driver) Received(blocks, bytes int64) {
	d.o.Metrics.ReceivedBlocks.Add(float64(blocks))
	d.o.Metrics.ReceivedBytes.Add(float64(bytes))
	d.mu.Lock()
	d.recvBlocks += blocks
	d.recvBytes += bytes
	d.mu.Unlock()
}

// Status returns the node's view of the cluster.
func (d *Driver) Status() ClusterStatus {
	d.mu.Lock()
	defer d.mu.Unlock()
	s := d.snap
	out := ClusterStatus{
		Node: d.o.Self.Name, Connected: s.Connected,
		Migrating: d.status.Migrating, Pending: d.status.Pending, GC: d.lastGC, Leaving: d.leaving.Load(),
		ViewEpoch: d.local.ViewEpoch, RoundsAborted: d.aborted.Load(),
		Participants: []ParticipantStatus{},
	}
	out.Members = make([]adminapi.Member, 0, len(s.Members))
	for _, m := range s.Members {
		out.Members = append(out.Members, adminapi.Member{Name: m.Name, Addr: m.Addr, VNodes: m.VNodes, Leaving: m.Leaving, PublicURL: m.PublicURL})
	}
	if s.Ring != nil {
		out.Epoch, out.RingMembers = s.Ring.Epoch, membership.Names(s.Ring.Members)
	}
	if b := s.Barrier; b != nil {
		out.Round, out.Target = b.ID, membership.Names(b.Target)
		for _, name := range b.Participants {
			p, ok := s.Participants[name]
			out.Participants = append(out.Participants, ParticipantStatus{
				Name: name, Registered: ok, Ready: p.Ready, SentBlocks: p.SentBlocks, SentBytes: p.SentBytes})
		}
		sort.Slice(out.Participants, func(i, j int) bool { return out.Participants[i].Name < out.Participants[j].Name })
	}
	if p := d.progress; p != nil {
		out.Transfer.PlannedBlocks, out.Transfer.SentBlocks, out.Transfer.SentBytes = p.PlannedBlocks.Load(), p.SentBlocks.Load(), p.SentBytes.Load()
	}
	out.Transfer.ReceivedBlocks, out.Transfer.ReceivedBytes = d.recvBlocks, d.recvBytes
	if d.lastRound.ID != "" {
		lr := d.lastRound
		out.LastRound = &lr
	}
	return out
}
