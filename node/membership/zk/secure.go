package zk

import (
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"sort"
	"sync"
	"time"

	"github.com/go-zookeeper/zk"

	"github.com/goblocks/goblocks/node/auth"
	"github.com/goblocks/goblocks/node/membership"
)

// ensureAuth sends the digest credentials once per connection object; the
// library re-sends them after every reconnect.
func (s *Store) ensureAuth() error {
	if s.o.Auth == "" || s.authed {
		return nil
	}
	if err := s.conn.AddAuth("digest", []byte(s.o.Auth)); err != nil {
		return fmt.Errorf("zookeeper auth: %w", err)
	}
	s.authed = true
	return nil
}

// fixACLs gives the layout znodes this node's ACL, once per Run: a cluster
// that ran without Auth (world ACL) is closed when Auth is turned on.
func (s *Store) fixACLs() error {
	if s.o.Auth == "" || s.aclsFixed {
		return nil
	}
	for _, p := range []string{s.o.Root, s.p("members"), s.p("ring")} {
		_, err := s.conn.SetACL(p, s.acl, -1)
		switch {
		case errors.Is(err, zk.ErrNoNode):
		case errors.Is(err, zk.ErrNoAuth):
			return fmt.Errorf("znode %s is not writable with ZKAuth's credentials (created by another user?): %w", p, err)
		case err != nil:
			return fmt.Errorf("set ACL of %s: %w", p, err)
		}
	}
	s.aclsFixed = true
	return nil
}

// ensureToken reads the shared cluster token, creating it with a random
// value if no node has yet. Its ACL is this node's: only clients holding
// the cluster's ZooKeeper credentials can read it.
func (s *Store) ensureToken() error {
	if s.o.SharedToken == nil || s.tokenKnown {
		return nil
	}
	if s.o.Auth == "" {
		return errors.New("a shared cluster token needs ZooKeeper credentials (ZKAuth): without them anyone could read it")
	}
	p := s.p("cluster-token")
	data, _, err := s.conn.Get(p)
	if errors.Is(err, zk.ErrNoNode) {
		var tok string
		if tok, err = auth.Generate(); err != nil {
			return err
		}
		if _, err = s.conn.Create(p, []byte(tok), 0, s.acl); err == nil {
			data = []byte(tok)
			s.o.Logger.Info().Str("znode", p).Msg("generated the cluster token")
		} else if errors.Is(err, zk.ErrNodeExists) {
			data, _, err = s.conn.Get(p) // another node won the race
		}
	}
	if err != nil {
		return fmt.Errorf("read cluster token %s: %w", p, err)
	}
	if err := auth.Validate(string(data)); err != nil {
		return fmt.Errorf("znode %s holds no valid cluster token (%v): delete it and the next node to start generates a new one", p, err)
	}
	s.o.SharedToken(string(data))
	s.tokenKnown = true
	return nil
}

// ownRecord checks this node's member record as read (m, or the error
// decoding it) against what the node last wrote, and rewrites it if
// someone else changed it (e.g. flagged it leaving): only this node speaks
// for itself. It holds mu like SetMember, so a record this node is
// updating right now is never taken for a foreign change and undone.
//
// version is the znode version read: one older than this node's last write
// is a cached read of its own earlier record (the watch has not fired
// yet), not somebody else's change.
func (s *Store) ownRecord(p string, m membership.Member, version int32, readErr error) (membership.Member, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if readErr == nil && reflect.DeepEqual(m, s.self) {
		return m, nil
	}
	if version < s.selfVersion {
		return s.self, nil
	}
	data, err := json.Marshal(s.self)
	if err != nil {
		return s.self, err
	}
	stat, err := s.conn.Set(p, data, -1)
	if err != nil {
		return s.self, fmt.Errorf("restore own member record %s: %w", p, err)
	}
	s.selfVersion = stat.Version
	if s.logs.allow("reassert:" + p) {
		s.o.Logger.Warn().Str("znode", p).Msg("this node's member record was changed by another client; restored it (repeats are logged once a minute)")
	}
	return s.self, nil
}

// decode unmarshals a znode's JSON into v and validates it.
func decode[T any](data []byte, v *T, validate func(T) error) error {
	if err := json.Unmarshal(data, v); err != nil {
		return fmt.Errorf("undecodable: %w", err)
	}
	return validate(*v)
}

// checked records whether a znode's content was valid: an invalid one is
// remembered for Problems, counted and logged (once a minute per znode);
// a valid one clears an earlier complaint. It returns err.
func (s *Store) checked(p string, err error) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err == nil {
		delete(s.invalid, p)
		return nil
	}
	s.invalid[p] = err.Error()
	if s.o.OnInvalid != nil {
		s.o.OnInvalid(p)
	}
	if s.logs.allow("invalid:" + p) {
		s.o.Logger.Error().Str("znode", p).Err(err).Msg("refusing invalid data in zookeeper (repeats are logged once a minute)")
	}
	return err
}

// barrier decodes the migration barrier. An invalid one is replaced by
// the last valid barrier read, now at the bad record's version, so the
// round it described can still end (its commit or abort deletes the bad
// record); with none, no round is reported.
func (s *Store) barrier(data versioned, exists bool) (membership.Barrier, bool) {
	if !exists {
		return membership.Barrier{}, false
	}
	var b membership.Barrier
	if err := s.checked(s.p("migration"), decode(data.data, &b, membership.Barrier.Validate)); err != nil {
		if s.lastGood.barrier.ID == "" {
			return b, false
		}
		b = s.lastGood.barrier
	}
	b.Version = data.version
	s.lastGood.barrier = b
	return b, true
}

// lastGood is the last valid content of the znodes a node routes by.
type lastGood struct {
	ring    *membership.RingState
	barrier membership.Barrier
}

// Problems describes every znode whose content is currently refused.
func (s *Store) Problems() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]string, 0, len(s.invalid))
	for p, why := range s.invalid {
		out = append(out, fmt.Sprintf("zookeeper znode %s holds invalid data (%s); the last valid value is used", p, why))
	}
	sort.Strings(out)
	return out
}

// rateLimiter lets one log line per key through per minute, so a fault
// that repeats on every retry cannot flood the log.
type rateLimiter struct {
	mu   sync.Mutex
	last map[string]time.Time
}

func (r *rateLimiter) allow(key string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	now := time.Now()
	if t, ok := r.last[key]; ok && now.Sub(t) < time.Minute {
		return false
	}
	if r.last == nil {
		r.last = map[string]time.Time{}
	}
	if len(r.last) > 1024 { // keys carry error text: bound the map
		clear(r.last)
	}
	r.last[key] = now
	return true
}
