// Package migration drives membership changes: it decides, from each
// cluster Snapshot, the next step of the five-phase protocol (detect,
// transfer, mark ready, commit, swap) and carries it out: streaming the
// blocks ring.Diff assigns to this node, committing the new ring, and
// collecting stale copies after the grace period.
//
// Decide is the pure core: no goroutines, no I/O, table-tested. The Driver
// does the I/O.
package migration

import (
	"github.com/goblocks/goblocks/node/membership"
)

// Local is what this node knows about itself that the coordination store
// does not hold.
type Local struct {
	Self string
	// RF is the replication factor new members' tokens are balanced for
	// (0: tokens derived from names, as before allocation existed).
	RF int
	// ViewRound is the round whose dual-ring view this node has switched
	// to ("" = none). Switching waits for in-flight writes on the old view.
	ViewRound string
	// ViewEpoch is the epoch of the committed ring this node routes by.
	ViewEpoch int64
	// TransferRound is the round whose transfer has been started;
	// TransferDone reports whether it finished.
	TransferRound string
	TransferDone  bool
	// Leaving is set after SIGTERM.
	Leaving bool
}

// Kind names an action.
type Kind int

// Actions, in the order a round goes through them.
const (
	InitRing      Kind = iota + 1 // create the first ring from the live members
	SwapRing                      // route by the committed ring (after a commit)
	CreateBarrier                 // start a round towards the live members (if the ring is unchanged)
	SwitchView                    // route writes to old and new owners of Barrier
	Register                      // register as participant (after SwitchView)
	StartTransfer                 // stream this node's hand-overs
	MarkReady                     // report the transfer complete
	Commit                        // every participant ready: delete barrier + write ring
	Abort                         // a participant died: delete barrier, keep ring
	LeaveDone                     // a leaving node is out of the ring: it may exit
)

func (k Kind) String() string {
	return [...]string{"?", "InitRing", "SwapRing", "CreateBarrier", "SwitchView", "Register",
		"StartTransfer", "MarkReady", "Commit", "Abort", "LeaveDone"}[k]
}

// Action is one step for the driver.
type Action struct {
	Kind    Kind
	Ring    membership.RingState // InitRing, SwapRing, Commit (the new ring)
	Barrier membership.Barrier   // CreateBarrier (new), SwitchView..Abort
}

// Status summarises a snapshot for the admin endpoint and metrics.
type Status struct {
	Migrating bool
	// Pending: live members differ from the running round's target; one
	// more round will follow its commit.
	Pending bool
}

// Decide returns the actions this node should take for snapshot s, in
// order. newID names a new round when one must start.
func Decide(s membership.Snapshot, l Local, newID func() string) ([]Action, Status) {
	var st Status
	if !s.Connected {
		return nil, st
	}
	target := owningMembers(s.Members)
	if s.Ring == nil {
		if len(target) == 0 {
			return nil, st
		}
		return []Action{{Kind: InitRing, Ring: membership.RingState{Epoch: 1, Members: placeTarget(nil, target, l.RF)}}}, st
	}
	if l.Leaving && len(target) == 0 {
		// Every live member is leaving (the whole cluster shuts down):
		// there is nobody to hand data to and no ring without them to wait
		// for. The committed ring stays; each node keeps its data on disk
		// and routes by that ring again when the cluster comes back.
		return []Action{{Kind: LeaveDone}}, st
	}
	var acts []Action
	stale := l.ViewEpoch != s.Ring.Epoch || (s.Barrier == nil && l.ViewRound != "")
	if stale && (s.Barrier == nil || s.Barrier.FromEpoch == s.Ring.Epoch) {
		acts = append(acts, Action{Kind: SwapRing, Ring: *s.Ring})
	}
	b := s.Barrier
	if b == nil {
		if l.Leaving && !inMembers(s.Ring.Members, l.Self) {
			acts = append(acts, Action{Kind: LeaveDone})
			return acts, st
		}
		if len(target) > 0 && !membership.SameRing(target, s.Ring.Members) {
			nb := membership.Barrier{
				ID:           newID(),
				FromEpoch:    s.Ring.Epoch,
				Target:       placeTarget(s.Ring.Members, target, l.RF),
				Participants: participants(s.Members, s.Ring.Members, target),
			}
			acts = append(acts, Action{Kind: CreateBarrier, Barrier: nb, Ring: *s.Ring})
		}
		return acts, st
	}
	if l.Leaving && !inMembers(s.Ring.Members, l.Self) && !contains(b.Participants, l.Self) {
		acts = append(acts, Action{Kind: LeaveDone})
	}
	st.Migrating = true
	st.Pending = !membership.SameRing(target, b.Target)
	live := map[string]bool{}
	for _, m := range s.Members {
		live[m.Name] = true
	}
	if b.FromEpoch != s.Ring.Epoch {
		// A barrier is created conditionally on the ring version and
		// deleted together with the ring update, so this is a snapshot
		// that saw the new ring before the barrier's deletion: wait for
		// the watch.
		return acts, st
	}
	for _, p := range b.Participants {
		if !live[p] {
			// A participant died: what it held must come from the other
			// replicas, so the round restarts from the live members.
			return append(acts, Action{Kind: Abort, Barrier: *b}), st
		}
	}
	allRegistered, allReady := true, true
	for _, p := range b.Participants {
		part, ok := s.Participants[p]
		allRegistered = allRegistered && ok
		allReady = allReady && ok && part.Ready
	}
	if allReady {
		next := membership.RingState{Epoch: s.Ring.Epoch + 1, Members: b.Target, Version: s.Ring.Version}
		return append(acts, Action{Kind: Commit, Barrier: *b, Ring: next}), st
	}
	if l.ViewRound != b.ID {
		// Every node, participant or not, writes to old and new owners
		// while the round runs.
		acts = append(acts, Action{Kind: SwitchView, Barrier: *b})
		return acts, st
	}
	if !contains(b.Participants, l.Self) {
		return acts, st
	}
	me, registered := s.Participants[l.Self]
	switch {
	case !registered:
		acts = append(acts, Action{Kind: Register, Barrier: *b})
	case !allRegistered:
		// Wait: a participant that has not registered may still have
		// writes in flight on the old view that our scan would miss.
	case l.TransferRound != b.ID:
		acts = append(acts, Action{Kind: StartTransfer, Barrier: *b})
	case l.TransferDone && !me.Ready:
		acts = append(acts, Action{Kind: MarkReady, Barrier: *b})
	}
	return acts, st
}

// participants of a new round: the live members that hold data (in the
// committed ring) or will receive it (in the target). A node whose leave
// has been committed is neither, so it can exit without aborting the
// round.
func participants(live, ring, target []membership.Member) []string {
	var out []string
	for _, m := range live {
		if inMembers(ring, m.Name) || inMembers(target, m.Name) {
			out = append(out, m.Name)
		}
	}
	return out
}

// owningMembers are the live members that should own data: all but the
// leaving ones, sorted by name.
func owningMembers(ms []membership.Member) []membership.Member {
	var out []membership.Member
	for _, m := range ms {
		if !m.Leaving {
			m.PublicURL = "" // a live record's field, not the ring's
			out = append(out, m)
		}
	}
	return membership.SortByName(out)
}

func inMembers(ms []membership.Member, name string) bool {
	for _, m := range ms {
		if m.Name == name {
			return true
		}
	}
	return false
}

func contains(ss []string, s string) bool {
	for _, x := range ss {
		if x == s {
			return true
		}
	}
	return false
}
