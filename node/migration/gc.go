package migration

import (
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
func reconcile(eng storage.Engine, v ring.View, self string, now time.Time, grace, tombstoneGrace time.Duration) (st GCStats, next time.Time, err error) {
	var firstErr error
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
	err = eng.Scan("", func(id string, m storage.Meta) bool {
		st.Scanned++
		var err error
		switch {
		case m.Tombstone && now.Sub(m.Version.Timestamp.Physical()) > tombstoneGrace:
			var ok bool
			if ok, err = eng.Remove(id, m.Version); ok {
				st.TombstonesPurged++
			}
		case m.Tombstone:
			// Kept, owned or not, until the tombstone grace: removing it
			// earlier could let a lagging replica resurrect the block.
		case owned(id) && !m.StaleSince.IsZero():
			var ok bool
			if ok, err = eng.MarkStale(id, m.Version, time.Time{}); ok {
				st.Reowned++
			}
		case owned(id):
		case m.StaleSince.IsZero():
			var ok bool
			if ok, err = eng.MarkStale(id, m.Version, now); ok {
				st.MarkedStale++
				st.Stale++
				expires(now)
			}
		case now.Sub(m.StaleSince) >= grace:
			var ok bool
			if ok, err = eng.Remove(id, m.Version); ok {
				st.Collected++
			}
		default:
			st.Stale++
			expires(m.StaleSince)
		}
		if err != nil && firstErr == nil {
			firstErr = err
		}
		return true
	})
	if err != nil {
		return st, next, err
	}
	return st, next, firstErr
}
