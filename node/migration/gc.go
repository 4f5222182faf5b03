package migration

import (
	"context"
	"errors"
	"time"

	"github.com/goblocks/goblocks/node/adminapi"
	"github.com/goblocks/goblocks/node/ring"
	"github.com/goblocks/goblocks/node/storage"
)

// GCStats counts one reconcile pass (the operator contract's type).
type GCStats = adminapi.GCStats

// reconcile makes each local record's state match the view: copies this
// node owns in neither the committed nor the target ring become stale (and
// stay readable); stale copies it owns again become owned; stale copies
// past the grace period and tombstones past the tombstone grace period are
// removed. Every change is conditional on the version read, so a write
// racing the pass wins. next is when the first stale copy left by the pass
// reaches the grace period (zero when none is left), so the caller can
// collect it then rather than at its next periodic pass.
//
// arcs limits the pass to the records in those arcs (the ones a ring swap
// changed, see ring.OwnershipChanges); nil reads every record. st.Stale
// then counts the stale copies left in the arcs, and staleBefore those
// the pass found there, so the caller can keep the store's total. When
// ctx ends the pass stops where it is (a node that left the ring would
// otherwise mark its whole store stale before it could exit) and returns
// ctx's error.
//
// onStale, when set, hears of each committed change to the number of
// stale copies (+1 marked, -1 collected or owned again) as it happens, so
// the store's stale count can be told while a pass runs: a collection
// pass removes an arc's worth of stale copies over many seconds.
//
// still, when set, is asked before each batch is committed whether v is
// still the node's view (its release runs after the commit); false stops
// the pass with errViewChanged. A pass can take minutes under load, and a decision made
// by a replaced view is wrong: a copy the new view gives back to this
// node would be marked stale or removed.
func reconcile(ctx context.Context, eng storage.Engine, v ring.View, self string, now time.Time, grace, tombstoneGrace time.Duration, arcs []ring.Range, still func() (release func(), ok bool), onStale func(delta int64)) (st GCStats, next time.Time, staleBefore int64, err error) {
	var firstErr error
	viewChanged := false
	expires := func(staleSince time.Time) {
		if t := staleSince.Add(grace); next.IsZero() || t.Before(next) {
			next = t
		}
	}
	owned := func(id string) bool {
		if v.Current != nil && v.Current.IsOwner(self, id, v.RF) {
			return true
		}
		return v.Target != nil && v.Target.IsOwner(self, id, v.RF)
	}
	// Changes are applied a batch at a time: one commit per batch, not
	// per record (a commit waits in the store's queue behind the clients'
	// synced writes).
	var batch []storage.Change
	var kinds []*int64 // the counter each change adds to once done
	flush := func() {
		if len(batch) == 0 || viewChanged {
			return
		}
		if still != nil {
			release, ok := still()
			if !ok {
				viewChanged = true
				return
			}
			defer release()
		}
		done, err := eng.ApplyChanges(batch)
		if err != nil && firstErr == nil {
			firstErr = err
		}
		for k, ok := range done {
			if !ok {
				continue
			}
			*kinds[k]++
			switch kinds[k] {
			case &st.MarkedStale:
				st.Stale++
				expires(now)
				if onStale != nil {
					onStale(1)
				}
			case &st.Collected, &st.Reowned:
				if onStale != nil {
					onStale(-1)
				}
			}
		}
		batch, kinds = batch[:0], kinds[:0]
	}
	change := func(c storage.Change, counter *int64) {
		batch, kinds = append(batch, c), append(kinds, counter)
		if len(batch) == gcBatch {
			flush()
		}
	}
	visit := func(id string, m storage.Meta) bool {
		st.Scanned++
		if !m.StaleSince.IsZero() && !m.Tombstone {
			staleBefore++
		}
		switch {
		case m.Tombstone && now.Sub(m.Version.Timestamp.Physical()) > tombstoneGrace:
			change(storage.Change{ID: id, Version: m.Version, Remove: true}, &st.TombstonesPurged)
		case m.Tombstone:
			// Kept, owned or not, until the tombstone grace: removing it
			// earlier could let a lagging replica resurrect the block.
		case owned(id) && !m.StaleSince.IsZero():
			change(storage.Change{ID: id, Version: m.Version}, &st.Reowned)
		case owned(id):
		case m.StaleSince.IsZero():
			change(storage.Change{ID: id, Version: m.Version, StaleSince: now}, &st.MarkedStale)
		case now.Sub(m.StaleSince) >= grace:
			change(storage.Change{ID: id, Version: m.Version, Remove: true, StaleSince: m.StaleSince}, &st.Collected)
		default:
			st.Stale++
			expires(m.StaleSince)
		}
		return ctx.Err() == nil && !viewChanged
	}
	if arcs == nil {
		err = eng.Scan("", visit)
	}
	for _, r := range arcs {
		if err = eng.ScanRange(r, visit); err != nil {
			break
		}
	}
	flush()
	if err == nil {
		err = ctx.Err()
	}
	if err == nil && viewChanged {
		err = errViewChanged
	}
	if err != nil {
		return st, next, staleBefore, err
	}
	return st, next, staleBefore, firstErr
}

// errViewChanged stops a GC pass whose view was replaced; the pass the
// new view schedules takes over.
var errViewChanged = errors.New("the view changed during the pass")

// gcBatch is how many changes a GC pass commits at once.
const gcBatch = 256

// gcPass is why a GC pass runs.
type gcPass int

const (
	periodicPass gcPass = iota // every GCInterval
	swapPass                   // the view changed (a ring swap)
	expiryPass                 // a stale copy reached the grace period
)

func (p gcPass) String() string {
	return [...]string{"periodic", "swap", "expiry"}[p]
}

// gcScope decides which records each pass reads. The periodic pass reads
// every record (tombstones expire anywhere). A swap pass reads only the
// arcs where this node's ownership changed since the view of the last
// pass, and an expiry pass only the arcs swap passes left stale copies in;
// whenever what lies outside them is unknown (the first pass, a failed
// one, stale copies a full pass found) the next pass reads everything.
type gcScope struct {
	self     string
	last     *ring.View   // the view the last successful pass reconciled with
	pending  []ring.Range // arcs of swap passes that left stale copies
	fullNext bool         // a full pass left stale copies: the expiry pass reads all
}

// arcs returns what the next pass of kind reads in view v: nil for every
// record, an empty slice for none.
func (g *gcScope) arcs(kind gcPass, v ring.View) []ring.Range {
	switch {
	case kind == swapPass && g.last != nil:
		arcs := ring.OwnershipChanges(*g.last, v, g.self)
		if arcs == nil {
			arcs = []ring.Range{} // no change: nothing to read
		}
		return arcs
	case kind == expiryPass && !g.fullNext && g.pending != nil:
		return g.pending
	}
	return nil
}

// done records a pass over arcs (as arcs returned) that left stale stale
// copies there, or failed.
func (g *gcScope) done(kind gcPass, v ring.View, arcs []ring.Range, stale int64, err error) {
	switch {
	case err != nil:
		// What the pass did not reach is unknown: read all next time.
		g.last, g.pending, g.fullNext = nil, nil, true
	case arcs == nil:
		g.last, g.pending, g.fullNext = &v, nil, stale > 0
	case kind == swapPass:
		g.last = &v
		if stale > 0 {
			g.pending = append(g.pending, arcs...)
		}
	case stale == 0:
		g.pending = nil // the expiry pass collected them all
	}
}
