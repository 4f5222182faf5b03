// Package membership describes the cluster state kept in the coordination
// service (ZooKeeper): live members, the committed ring, and the migration
// barrier with its participants. The zk subpackage implements Store; the
// migration package decides what to do with each Snapshot.
package membership

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"sort"
	"strings"
)

// Sentinel errors of Store implementations.
var (
	// ErrExists: a create lost a race (the barrier or ring already exists).
	ErrExists = errors.New("membership: already exists")
	// ErrConflict: a conditional update lost a race (a version changed).
	ErrConflict = errors.New("membership: concurrent change")
	// ErrNoSession: the node has no coordination session right now.
	ErrNoSession = errors.New("membership: no session")
)

// Member is one live node as it registered itself.
type Member struct {
	Name   string `json:"name"`
	Addr   string `json:"addr"`
	VNodes int    `json:"vnodes"`
	// Leaving marks a node that received SIGTERM: it stays a transfer
	// source until the ring that removes it is committed, then exits.
	Leaving bool `json:"leaving,omitempty"`
	// Tokens are the member's ring tokens, chosen when it joined (see
	// ring.Allocate; a member may also hold tokens of members that left,
	// ring.Release) and recorded in the committed ring and the barrier's
	// target so every node places blocks alike. Live member records carry
	// none; a ring member without them has tokens derived from its name.
	Tokens []uint64 `json:"tokens,omitempty"`
	// PublicURL is where operators' browsers and tools reach the node
	// (config PublicURL), when that differs from Addr: in the lab, the
	// host port the gateway publishes it on. Live records only.
	PublicURL string `json:"public_url,omitempty"`
}

// RingState is the committed ring: the members that own data, and an epoch
// that increases with every committed migration.
type RingState struct {
	Epoch   int64    `json:"epoch"`
	Members []Member `json:"members"`
	// Version is the coordination store's version of the ring record, for
	// conditional commits. Not serialized.
	Version int32 `json:"-"`
}

// Barrier is an active migration round from the ring at FromEpoch to a
// ring of Target.
type Barrier struct {
	ID        string   `json:"id"`
	FromEpoch int64    `json:"from_epoch"`
	Target    []Member `json:"target"`
	// Participants must all register and report ready before the round
	// commits: every live member when the round started (leaving ones
	// included: they hold data to hand over).
	Participants []string `json:"participants"`
	Version      int32    `json:"-"`
}

// Participant is one node's registration in a round.
type Participant struct {
	Name          string `json:"name"`
	Round         string `json:"round"`
	Ready         bool   `json:"ready"`
	SentBlocks    int64  `json:"sent_blocks"`
	SentBytes     int64  `json:"sent_bytes"`
	PlannedBlocks int64  `json:"planned_blocks"`
}

// Snapshot is everything a node knows of the cluster at one moment.
type Snapshot struct {
	// Connected is false while the node has no session: it then must not
	// coordinate writes, and nothing else in the snapshot is current.
	Connected    bool
	Members      []Member // live, sorted by name
	Ring         *RingState
	Barrier      *Barrier
	Participants map[string]Participant
}

// Store is the coordination service. Methods may block on the network and
// are safe for concurrent use. Snapshots are delivered by Run.
type Store interface {
	// Run keeps this node registered (re-registering after a session
	// expiry) and calls publish with a new Snapshot after every change,
	// until ctx ends. publish must not block for long.
	Run(ctx context.Context, publish func(Snapshot)) error
	// SetMember updates this node's own member record (e.g. Leaving).
	SetMember(m Member) error
	// InitRing creates the ring record if there is none (ErrExists if
	// there is).
	InitRing(r RingState) error
	// CreateBarrier starts a round from ring (ErrExists if one runs,
	// ErrConflict if the ring changed since it was read).
	CreateBarrier(b Barrier, ring RingState) error
	// SetParticipant creates or updates this node's participant record
	// in the round b.
	SetParticipant(b Barrier, p Participant) error
	// Commit ends round b: it deletes the barrier and writes ring, in one
	// atomic operation conditional on the versions read (ErrConflict).
	Commit(b Barrier, ring RingState) error
	// Abort deletes round b without changing the ring.
	Abort(b Barrier) error
}

// Names returns the members' names.
func Names(ms []Member) []string {
	out := make([]string, len(ms))
	for i, m := range ms {
		out[i] = m.Name
	}
	return out
}

// SortByName sorts members in place by name and returns them.
func SortByName(ms []Member) []Member {
	sort.Slice(ms, func(i, j int) bool { return ms[i].Name < ms[j].Name })
	return ms
}

// SameRing reports whether two member lists describe the same ring
// (names, addresses and vnode counts), ignoring order and Leaving.
func SameRing(a, b []Member) bool {
	if len(a) != len(b) {
		return false
	}
	idx := make(map[string]Member, len(a))
	for _, m := range a {
		idx[m.Name] = m
	}
	for _, m := range b {
		o, ok := idx[m.Name]
		if !ok || o.Addr != m.Addr || o.VNodes != m.VNodes {
			return false
		}
	}
	return true
}

// Limits of what a member record may hold; anything beyond is not a record
// a goblocks node wrote.
const (
	maxNameLen = 255
	maxVNodes  = 4096
	maxMembers = 4096
)

// Validate checks a member record read from the coordination store, which
// anyone holding its credentials (or none, without ACLs) can write.
func (m Member) Validate() error {
	if m.Name == "" || len(m.Name) > maxNameLen || strings.ContainsAny(m.Name, "/ \t\n") {
		return fmt.Errorf("member name %q: want 1-%d characters without '/' or spaces", m.Name, maxNameLen)
	}
	if _, _, err := net.SplitHostPort(m.Addr); err != nil {
		return fmt.Errorf("member %s: address %q: %v", m.Name, m.Addr, err)
	}
	if m.VNodes < 1 || m.VNodes > maxVNodes {
		return fmt.Errorf("member %s: vnodes %d: want 1-%d", m.Name, m.VNodes, maxVNodes)
	}
	if len(m.Tokens) > maxVNodes {
		return fmt.Errorf("member %s: %d tokens: at most %d", m.Name, len(m.Tokens), maxVNodes)
	}
	if m.PublicURL != "" {
		if err := ValidatePublicURL(m.PublicURL); err != nil {
			return fmt.Errorf("member %s: %w", m.Name, err)
		}
	}
	return nil
}

// maxURLLen bounds a PublicURL.
const maxURLLen = 2048

// ValidatePublicURL accepts an absolute http or https URL with a host and
// nothing after the path: pages link to it, so a record in the
// coordination store must not smuggle in another scheme (javascript:).
func ValidatePublicURL(s string) error {
	u, err := url.Parse(s)
	switch {
	case len(s) > maxURLLen:
		return fmt.Errorf("public URL: longer than %d bytes", maxURLLen)
	case err != nil:
		return fmt.Errorf("public URL %q: %v", s, err)
	case u.Scheme != "http" && u.Scheme != "https", u.Host == "", u.User != nil, u.RawQuery != "", u.Fragment != "":
		return fmt.Errorf("public URL %q: want http(s)://host[:port][/path]", s)
	}
	return nil
}

func validateMembers(what string, ms []Member) error {
	if len(ms) > maxMembers {
		return fmt.Errorf("%s lists %d members: at most %d", what, len(ms), maxMembers)
	}
	seen := make(map[string]bool, len(ms))
	for _, m := range ms {
		if err := m.Validate(); err != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
		if seen[m.Name] {
			return fmt.Errorf("%s lists %s twice", what, m.Name)
		}
		seen[m.Name] = true
	}
	return nil
}

// Validate checks a committed ring read from the coordination store.
func (r RingState) Validate() error {
	if r.Epoch < 0 {
		return fmt.Errorf("ring epoch %d is negative", r.Epoch)
	}
	if len(r.Members) == 0 {
		return errors.New("ring has no members")
	}
	return validateMembers("ring", r.Members)
}

// Validate checks a migration barrier read from the coordination store.
func (b Barrier) Validate() error {
	if b.ID == "" || len(b.ID) > maxNameLen {
		return fmt.Errorf("barrier id %q: want 1-%d characters", b.ID, maxNameLen)
	}
	if b.FromEpoch < 0 {
		return fmt.Errorf("barrier from_epoch %d is negative", b.FromEpoch)
	}
	if err := validateMembers("barrier target", b.Target); err != nil {
		return err
	}
	if len(b.Participants) > maxMembers {
		return fmt.Errorf("barrier lists %d participants: at most %d", len(b.Participants), maxMembers)
	}
	for _, p := range b.Participants {
		if p == "" || len(p) > maxNameLen {
			return fmt.Errorf("barrier participant %q: want 1-%d characters", p, maxNameLen)
		}
	}
	return nil
}
