// Package zk implements membership.Store on ZooKeeper with
// github.com/go-zookeeper/zk.
//
// Layout under the root (default /goblocks):
//
//	members/member-<name>-<seq>   ephemeral sequential, one per live node (JSON Member)
//	ring                          the committed ring (JSON RingState)
//	migration                     the barrier of the running round (JSON Barrier)
//	migration/participants/<name> ephemeral, one per registered participant (JSON Participant)
//	cluster-token                 the shared cluster token (with Auth and SharedToken only)
//	volumes/<name>                one per volume (JSON volume.Volume; see volumes.go)
//
// With Options.Auth every znode is created with a digest ACL for those
// credentials only: a client without them can neither read nor change the
// cluster's state. Whatever is read is validated (see secure.go): an
// undecodable ring or barrier is reported, naming its znode, and the last
// good one is kept.
package zk

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-zookeeper/zk"
	"github.com/rs/zerolog"

	"github.com/goblocks/goblocks/node/membership"
)

// Options configure a Store.
type Options struct {
	Servers        []string
	Root           string        // default "/goblocks"
	SessionTimeout time.Duration // default 10s
	Self           membership.Member
	Logger         zerolog.Logger
	// OnSessionState, if set, is called on every session state change
	// (for metrics); it must not block.
	OnSessionState func(connected bool)
	// Auth is ZooKeeper digest credentials "user:password"; empty leaves
	// znodes open to anyone (world ACL).
	Auth string
	// SharedToken, if set (it needs Auth), is called once with the
	// cluster token kept in the cluster-token znode, which the first node
	// creates with a generated value.
	SharedToken func(token string)
	// OnInvalid, if set, is called for every invalid znode read (for
	// metrics); it must not block.
	OnInvalid func(znode string)
}

// Store is a ZooKeeper-backed membership.Store.
type Store struct {
	o    Options
	conn *zk.Conn

	connected atomic.Bool
	wake      chan struct{} // session events wake the watch loop
	// lastContact is when (unix ns) the last request that ZooKeeper
	// answered was sent: the server heard from this session no earlier,
	// so the session cannot expire before lastContact + SessionTimeout.
	// Zero after an expiry.
	lastContact atomic.Int64

	acl []zk.ACL // what every znode this node creates carries
	// Owned by the Run goroutine:
	authed     bool // Auth was sent on this connection (the library re-sends it)
	aclsFixed  bool // the layout's ACLs were set to acl
	tokenKnown bool // SharedToken was called
	lastGood   lastGood
	logs       rateLimiter

	mu   sync.Mutex
	self membership.Member
	// selfVersion is the znode version of this node's last write of its
	// member record (0 at creation).
	selfVersion int32
	memberPath  string // our ephemeral znode, "" when not (yet) registered
	participant *membership.Participant
	invalid     map[string]string // znode -> why what it holds was refused
}

// New connects to ZooKeeper. The session is established in the
// background; Run registers the node once it is.
func New(o Options) (*Store, error) {
	if o.Root == "" {
		o.Root = "/goblocks"
	}
	if o.SessionTimeout == 0 {
		o.SessionTimeout = 10 * time.Second
	}
	s := &Store{o: o, self: o.Self, wake: make(chan struct{}, 1), acl: zk.WorldACL(zk.PermAll), invalid: map[string]string{}}
	if o.Auth != "" {
		user, pass, ok := strings.Cut(o.Auth, ":")
		if !ok || user == "" || pass == "" {
			return nil, errors.New("zookeeper auth: want user:password")
		}
		s.acl = zk.DigestACL(zk.PermAll, user, pass)
	}
	conn, _, err := zk.Connect(o.Servers, o.SessionTimeout,
		zk.WithLogger(zkLogger{o.Logger}),
		// The library's own receive timeout: two thirds of the session.
		zk.WithDialer(boundedReadDialer(o.SessionTimeout*2/3)),
		// The library's event channel drops events when full; the callback
		// sees every state change.
		zk.WithEventCallback(s.onEvent))
	if err != nil {
		return nil, fmt.Errorf("zookeeper %v: %w", o.Servers, err)
	}
	s.conn = conn
	return s, nil
}

// Close ends the session: ZooKeeper deletes this node's ephemeral znodes.
func (s *Store) Close() { s.conn.Close() }

func (s *Store) onEvent(ev zk.Event) {
	if ev.Type != zk.EventSession {
		return
	}
	connected := ev.State == zk.StateHasSession
	if connected {
		s.lastContact.Store(time.Now().UnixNano())
	}
	if s.connected.Swap(connected) != connected && s.o.OnSessionState != nil {
		s.o.OnSessionState(connected)
	}
	if ev.State == zk.StateExpired {
		s.lastContact.Store(0)
		// Ephemerals died with the session; the next loop re-creates them.
		s.mu.Lock()
		s.memberPath = ""
		s.mu.Unlock()
	}
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// ErrSessionMayHaveExpired: no contact with ZooKeeper for long enough that
// the session may be gone, and with it this node's place in the ring.
var ErrSessionMayHaveExpired = errors.New("zookeeper: no contact for longer than the session can outlive")

// SessionValid reports whether this node's session is certainly still
// alive: connected, or disconnected for less than the session timeout
// (minus a safety margin) since ZooKeeper last answered. While it is, no
// ring change that removes this node can commit, so it may keep serving
// on the ring it has.
func (s *Store) SessionValid() error {
	if s.connected.Load() {
		return nil
	}
	last := s.lastContact.Load()
	if last == 0 {
		return fmt.Errorf("%w: %w", membership.ErrNoSession, ErrSessionMayHaveExpired)
	}
	since := time.Since(time.Unix(0, last))
	if since < s.o.SessionTimeout-s.safetyMargin() {
		return nil
	}
	return fmt.Errorf("%w: %w: last answer %v ago, session timeout %v", membership.ErrNoSession, ErrSessionMayHaveExpired,
		since.Round(time.Millisecond), s.o.SessionTimeout)
}

// safetyMargin covers clock-rate differences and the time between the
// check and the end of a request that passed it.
func (s *Store) safetyMargin() time.Duration {
	return max(s.o.SessionTimeout/5, 100*time.Millisecond)
}

// keepContact probes ZooKeeper at a tenth of the session timeout while
// connected, recording when each answered probe was sent (lastContact):
// the library's own pings are not visible to it.
func (s *Store) keepContact(ctx context.Context) {
	t := time.NewTicker(max(s.o.SessionTimeout/10, 20*time.Millisecond))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if !s.connected.Load() {
			continue
		}
		sent := time.Now()
		if _, _, err := s.conn.Exists(s.o.Root); err == nil && s.connected.Load() {
			s.lastContact.Store(sent.UnixNano())
		}
	}
}

func (s *Store) p(parts ...string) string { return path.Join(append([]string{s.o.Root}, parts...)...) }

// Run keeps the node registered and publishes a Snapshot after every
// change it is told of by a watch or a session event.
func (s *Store) Run(ctx context.Context, publish func(membership.Snapshot)) error {
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); s.keepContact(ctx) }()
	defer wg.Wait()
	w := newWatcher(s.conn)
	retry := time.NewTimer(0)
	defer retry.Stop()
	for {
		var snap membership.Snapshot
		err := error(nil)
		if s.connected.Load() {
			err = s.ensureAuth()
			if err == nil {
				err = s.ensureLayout()
			}
			if err == nil {
				err = s.ensureToken()
			}
			if err == nil {
				err = s.ensureRegistered()
			}
			if err == nil {
				snap, err = s.read(w)
			}
		} else {
			err = membership.ErrNoSession
		}
		if err != nil {
			if !errors.Is(err, membership.ErrNoSession) && s.logs.allow("read:"+err.Error()) {
				s.o.Logger.Warn().Err(err).Msg("zookeeper read failed; retrying (repeats of this error are logged once a minute)")
			}
			publish(membership.Snapshot{Connected: false})
			w.reset()
			retry.Reset(200 * time.Millisecond)
			select {
			case <-ctx.Done():
				return nil
			case <-s.wake:
			case <-retry.C:
			}
			continue
		}
		publish(snap)
		if !w.wait(ctx, s.wake) {
			return nil
		}
	}
}

func (s *Store) ensureLayout() error {
	for _, p := range []string{s.o.Root, s.p("members")} {
		if _, err := s.conn.Create(p, nil, 0, s.acl); err != nil && !errors.Is(err, zk.ErrNodeExists) {
			if strings.HasPrefix(p, s.o.Root) && errors.Is(err, zk.ErrNoNode) && p == s.o.Root {
				if err := s.createParents(p); err != nil {
					return err
				}
				continue
			}
			return fmt.Errorf("create %s: %w", p, err)
		}
	}
	return s.fixACLs()
}

func (s *Store) createParents(p string) error {
	cur := ""
	for _, part := range strings.Split(strings.Trim(p, "/"), "/") {
		cur += "/" + part
		if _, err := s.conn.Create(cur, nil, 0, s.acl); err != nil && !errors.Is(err, zk.ErrNodeExists) {
			return fmt.Errorf("create %s: %w", cur, err)
		}
	}
	return nil
}

// ensureRegistered creates this node's member znode if it has none (first
// start, or the session expired and ZooKeeper deleted it).
func (s *Store) ensureRegistered() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.memberPath != "" {
		if ok, _, err := s.conn.Exists(s.memberPath); err == nil && ok {
			return nil
		}
	}
	data, err := json.Marshal(s.self)
	if err != nil {
		return err
	}
	// The name in the znode name lets an operator read `ls members`.
	p, err := s.conn.CreateProtectedEphemeralSequential(s.p("members", "member-"+s.self.Name+"-"), data, s.acl)
	if err != nil {
		return fmt.Errorf("register member: %w", err)
	}
	s.memberPath, s.selfVersion = p, 0
	s.o.Logger.Info().Str("znode", p).Msg("registered in zookeeper")
	if s.participant != nil {
		// The participant record was ephemeral too.
		_ = s.setParticipantLocked()
	}
	return nil
}

// SetMember updates this node's member record.
func (s *Store) SetMember(m membership.Member) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.self = m
	if s.memberPath == "" {
		return membership.ErrNoSession
	}
	data, err := json.Marshal(m)
	if err != nil {
		return err
	}
	stat, err := s.conn.Set(s.memberPath, data, -1)
	if err == nil {
		s.selfVersion = stat.Version
	}
	return err
}

// InitRing creates the ring record unless one exists.
func (s *Store) InitRing(r membership.RingState) error {
	data, err := json.Marshal(r)
	if err != nil {
		return err
	}
	_, err = s.conn.Create(s.p("ring"), data, 0, s.acl)
	if errors.Is(err, zk.ErrNodeExists) {
		return membership.ErrExists
	}
	return err
}

// CreateBarrier starts a round, with its participants directory,
// atomically and only if the ring is still the one the round starts from:
// a node acting on a snapshot older than the last commit cannot start a
// round from a superseded ring.
func (s *Store) CreateBarrier(b membership.Barrier, ring membership.RingState) error {
	data, err := json.Marshal(b)
	if err != nil {
		return err
	}
	_, err = s.conn.Multi(
		&zk.CheckVersionRequest{Path: s.p("ring"), Version: ring.Version},
		&zk.CreateRequest{Path: s.p("migration"), Data: data, Acl: s.acl},
		&zk.CreateRequest{Path: s.p("migration", "participants"), Acl: s.acl},
	)
	switch {
	case errors.Is(err, zk.ErrNodeExists):
		return membership.ErrExists
	case errors.Is(err, zk.ErrBadVersion):
		return fmt.Errorf("%w: ring changed", membership.ErrConflict)
	}
	return err
}

// SetParticipant creates or updates this node's participant record.
func (s *Store) SetParticipant(b membership.Barrier, p membership.Participant) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	p.Round = b.ID
	s.participant = &p
	return s.setParticipantLocked()
}

func (s *Store) setParticipantLocked() error {
	data, err := json.Marshal(s.participant)
	if err != nil {
		return err
	}
	p := s.p("migration", "participants", s.participant.Name)
	_, err = s.conn.Set(p, data, -1)
	if errors.Is(err, zk.ErrNoNode) {
		_, err = s.conn.Create(p, data, zk.FlagEphemeral, s.acl)
	}
	if errors.Is(err, zk.ErrNoNode) {
		return fmt.Errorf("%w: round %s is over", membership.ErrConflict, s.participant.Round)
	}
	return err
}

// Commit deletes the round and writes the new ring in one multi.
func (s *Store) Commit(b membership.Barrier, ring membership.RingState) error {
	data, err := json.Marshal(ring)
	if err != nil {
		return err
	}
	ops, err := s.deleteRoundOps(b)
	if err != nil {
		return err
	}
	ops = append(ops, &zk.SetDataRequest{Path: s.p("ring"), Data: data, Version: ring.Version})
	return s.multi(ops)
}

// Abort deletes the round and leaves the ring as it is.
func (s *Store) Abort(b membership.Barrier) error {
	ops, err := s.deleteRoundOps(b)
	if err != nil {
		return err
	}
	return s.multi(ops)
}

func (s *Store) deleteRoundOps(b membership.Barrier) ([]any, error) {
	// A barrier re-created for the next round starts at version 0 again,
	// so check the round id as well as the version.
	data, stat, err := s.conn.Get(s.p("migration"))
	if errors.Is(err, zk.ErrNoNode) {
		return nil, fmt.Errorf("%w: round %s already ended", membership.ErrConflict, b.ID)
	}
	if err != nil {
		return nil, err
	}
	var cur membership.Barrier
	if json.Unmarshal(data, &cur) != nil || cur.ID != b.ID || stat.Version != b.Version {
		return nil, fmt.Errorf("%w: round %s already ended", membership.ErrConflict, b.ID)
	}
	parts, _, err := s.conn.Children(s.p("migration", "participants"))
	if err != nil && !errors.Is(err, zk.ErrNoNode) {
		return nil, err
	}
	var ops []any
	for _, name := range parts {
		ops = append(ops, &zk.DeleteRequest{Path: s.p("migration", "participants", name), Version: -1})
	}
	if err == nil {
		ops = append(ops, &zk.DeleteRequest{Path: s.p("migration", "participants"), Version: -1})
	}
	// The barrier's version makes the multi fail if another node already
	// ended this round and started the next.
	ops = append(ops, &zk.DeleteRequest{Path: s.p("migration"), Version: b.Version})
	return ops, nil
}

func (s *Store) multi(ops []any) error {
	_, err := s.conn.Multi(ops...)
	switch {
	case err == nil:
		return nil
	case errors.Is(err, zk.ErrBadVersion), errors.Is(err, zk.ErrNoNode), errors.Is(err, zk.ErrNotEmpty), errors.Is(err, zk.ErrNodeExists):
		return fmt.Errorf("%w: %v", membership.ErrConflict, err)
	}
	return err
}

// read loads the whole cluster state, arming a watch on everything it
// reads that is not already watched.
func (s *Store) read(w *watcher) (membership.Snapshot, error) {
	snap := membership.Snapshot{Connected: true, Participants: map[string]membership.Participant{}}
	children, err := w.children(s.p("members"))
	if err != nil {
		return snap, err
	}
	s.mu.Lock()
	ownPath := s.memberPath
	s.mu.Unlock()
	regs := make([]registration, 0, len(children))
	for _, c := range children {
		p := s.p("members", c)
		dv, ok, err := w.dataVersion(p)
		if err != nil {
			return snap, err
		}
		if !ok {
			continue
		}
		var m membership.Member
		err = decode(dv.data, &m, membership.Member.Validate)
		if p == ownPath {
			m, err = s.ownRecord(p, m, dv.version, err)
		}
		if s.checked(p, err) != nil {
			continue
		}
		regs = append(regs, registration{seq: sequence(c), member: m})
	}
	snap.Members = latestPerName(regs)
	if data, ok, err := w.dataVersion(s.p("migration")); err != nil {
		return snap, err
	} else if b, ok := s.barrier(data, ok); ok {
		snap.Barrier = &b
		parts, err := w.children(s.p("migration", "participants"))
		if err != nil {
			return snap, err
		}
		for _, name := range parts {
			data, ok, err := w.data(s.p("migration", "participants", name))
			if err != nil {
				return snap, err
			}
			var p membership.Participant
			if ok && json.Unmarshal(data, &p) == nil && p.Round == b.ID {
				snap.Participants[p.Name] = p
			}
		}
	}
	// A commit deletes the barrier and sets the ring in one multi, but
	// their watch events arrive one at a time: having seen the barrier go,
	// read the ring afresh rather than from a cache whose watch may not
	// have fired yet. Otherwise the node would see "round over, ring
	// unchanged" (an abort) and route by the old ring until the ring's
	// event arrives, writing only to the old owners meanwhile.
	if w.sawBarrier && snap.Barrier == nil {
		w.forget("d:" + s.p("ring"))
	}
	w.sawBarrier = snap.Barrier != nil
	if data, ok, err := w.dataVersion(s.p("ring")); err != nil {
		return snap, err
	} else if ok {
		var r membership.RingState
		if err := s.checked(s.p("ring"), decode(data.data, &r, membership.RingState.Validate)); err == nil {
			r.Version = data.version
			s.lastGood.ring = &r
		}
		// An invalid ring keeps the last good one, with its old version:
		// no commit can succeed over the bad record until it is fixed.
		snap.Ring = s.lastGood.ring
	}
	return snap, nil
}

// registration is one member znode: its sequence number and content.
type registration struct {
	seq    int64
	member membership.Member
}

// latestPerName lists each name once, sorted by name. A node that
// restarted before ZooKeeper expired its old session (or re-registered
// after a lost create response) briefly has two znodes: the latest
// registration (highest sequence) describes it.
func latestPerName(regs []registration) []membership.Member {
	latest := map[string]registration{}
	for _, r := range regs {
		if cur, ok := latest[r.member.Name]; !ok || r.seq > cur.seq {
			latest[r.member.Name] = r
		}
	}
	out := make([]membership.Member, 0, len(latest))
	for _, r := range latest {
		out = append(out, r.member)
	}
	return membership.SortByName(out)
}

// sequence is the number ZooKeeper appended to a sequential znode's name
// (its last 10 characters); names without one sort first.
func sequence(name string) int64 {
	if len(name) < 10 {
		return -1
	}
	n, err := strconv.ParseInt(name[len(name)-10:], 10, 64)
	if err != nil {
		return -1
	}
	return n
}

// watcher caches what it read and the one-shot watch armed for it: an
// entry is read again only after its watch fired, so watches never pile
// up on znodes that do not change.
type watcher struct {
	conn       *zk.Conn
	entries    map[string]*entry
	sawBarrier bool // the last read found a barrier
}

type entry struct {
	ch       <-chan zk.Event
	children []string
	data     []byte
	version  int32
	exists   bool
}

type versioned struct {
	data    []byte
	version int32
}

func newWatcher(conn *zk.Conn) *watcher { return &watcher{conn: conn, entries: map[string]*entry{}} }

func (w *watcher) reset() { w.entries = map[string]*entry{} }

// forget drops a cached entry so the next read fetches it again. Its old
// watch may still fire later; that costs one extra read, nothing more.
func (w *watcher) forget(key string) { delete(w.entries, key) }

func (w *watcher) children(p string) ([]string, error) {
	key := "c:" + p
	if e, ok := w.entries[key]; ok {
		return e.children, nil
	}
	c, _, ch, err := w.conn.ChildrenW(p)
	if errors.Is(err, zk.ErrNoNode) {
		// Watch for the parent's creation instead.
		ok, _, ech, eerr := w.conn.ExistsW(p)
		if eerr != nil {
			return nil, eerr
		}
		if ok {
			return w.children(p) // created in between
		}
		w.entries[key] = &entry{ch: ech}
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	w.entries[key] = &entry{ch: ch, children: c}
	return c, nil
}

func (w *watcher) data(p string) ([]byte, bool, error) {
	v, ok, err := w.dataVersion(p)
	return v.data, ok, err
}

func (w *watcher) dataVersion(p string) (versioned, bool, error) {
	key := "d:" + p
	if e, ok := w.entries[key]; ok {
		return versioned{e.data, e.version}, e.exists, nil
	}
	// An exists-watch fires on create, delete and data change alike.
	ok, _, ch, err := w.conn.ExistsW(p)
	if err != nil {
		return versioned{}, false, err
	}
	e := &entry{ch: ch}
	if ok {
		data, stat, err := w.conn.Get(p)
		switch {
		case errors.Is(err, zk.ErrNoNode):
		case err != nil:
			return versioned{}, false, err
		default:
			e.data, e.version, e.exists = data, stat.Version, true
		}
	}
	w.entries[key] = e
	return versioned{e.data, e.version}, e.exists, nil
}

// wait blocks until a watch fires (dropping that entry so it is read and
// re-armed), a session event arrives, or ctx ends (false).
func (w *watcher) wait(ctx context.Context, wake <-chan struct{}) bool {
	keys := make([]string, 0, len(w.entries))
	cases := []reflect.SelectCase{
		{Dir: reflect.SelectRecv, Chan: reflect.ValueOf(ctx.Done())},
		{Dir: reflect.SelectRecv, Chan: reflect.ValueOf(wake)},
	}
	for k, e := range w.entries {
		keys = append(keys, k)
		cases = append(cases, reflect.SelectCase{Dir: reflect.SelectRecv, Chan: reflect.ValueOf(e.ch)})
	}
	chosen, recv, ok := reflect.Select(cases)
	switch chosen {
	case 0:
		return false
	case 1:
		return true
	}
	delete(w.entries, keys[chosen-2])
	if ok {
		if ev, _ := recv.Interface().(zk.Event); ev.Type == zk.EventNotWatching {
			w.reset() // session lost: every watch is gone
		}
	} else {
		w.reset()
	}
	// Children changed: the children's data entries may be gone too;
	// dropping them lets the next read forget deleted znodes.
	for k := range w.entries {
		if strings.HasPrefix(k, "d:"+strings.TrimPrefix(keys[chosen-2], "c:")+"/") && strings.HasPrefix(keys[chosen-2], "c:") {
			if e := w.entries[k]; !e.exists {
				delete(w.entries, k)
			}
		}
	}
	return true
}

type zkLogger struct{ log zerolog.Logger }

func (l zkLogger) Printf(format string, args ...any) {
	l.log.Debug().Str("component", "zookeeper").Msgf(format, args...)
}
