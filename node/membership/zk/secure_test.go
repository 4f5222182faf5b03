package zk

import (
	"context"
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-zookeeper/zk"
	"github.com/rs/zerolog"

	"github.com/goblocks/goblocks/node/membership"
	"github.com/goblocks/goblocks/node/membership/zk/zktest"
)

// storeRun runs a store until the test ends and returns its snapshots.
func storeRun(t *testing.T, o Options) (*Store, <-chan membership.Snapshot) {
	t.Helper()
	st, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	snaps := make(chan membership.Snapshot, 256)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = st.Run(ctx, func(s membership.Snapshot) {
			select {
			case snaps <- s:
			default: // tests look at the latest state only
			}
		})
	}()
	t.Cleanup(func() { cancel(); <-done; st.Close() })
	return st, snaps
}

func waitSnap(t *testing.T, snaps <-chan membership.Snapshot, what string, ok func(membership.Snapshot) bool) membership.Snapshot {
	t.Helper()
	deadline := time.After(15 * time.Second)
	for {
		select {
		case s := <-snaps:
			if ok(s) {
				return s
			}
		case <-deadline:
			t.Fatalf("no snapshot with %s", what)
		}
	}
}

func rawConn(t *testing.T, addr, auth string) *zk.Conn {
	t.Helper()
	conn, _, err := zk.Connect([]string{addr}, 4*time.Second, zk.WithLogger(zk.DefaultLogger))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(conn.Close)
	if auth != "" {
		if err := conn.AddAuth("digest", []byte(auth)); err != nil {
			t.Fatal(err)
		}
	}
	return conn
}

// With Auth, every znode carries a digest ACL: a client without the
// credentials can neither read the cluster token nor flag a member
// leaving, add a fake member or replace the ring (each of which once
// moved data off a node or to an impostor). The token is generated once
// and shared by every node.
func TestAuthClosesTheClusterState(t *testing.T) {
	srv := zktest.Start(t)
	const creds = "goblocks:zk-test-password"
	var mu sync.Mutex
	tokens := map[string]string{}
	opts := func(name string) Options {
		return Options{Servers: []string{srv.Addr}, Root: "/sec", SessionTimeout: 2 * time.Second, Auth: creds,
			Self: membership.Member{Name: name, Addr: name + ":1", VNodes: 20}, Logger: zerolog.Nop(),
			SharedToken: func(tok string) { mu.Lock(); tokens[name] = tok; mu.Unlock() }}
	}
	a, snapsA := storeRun(t, opts("a"))
	_, snapsB := storeRun(t, opts("b"))
	waitSnap(t, snapsA, "a and b", func(s membership.Snapshot) bool { return len(s.Members) == 2 })
	waitSnap(t, snapsB, "a and b", func(s membership.Snapshot) bool { return len(s.Members) == 2 })
	if err := a.InitRing(membership.RingState{Epoch: 1, Members: []membership.Member{{Name: "a", Addr: "a:1", VNodes: 20}}}); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	if tokens["a"] == "" || tokens["a"] != tokens["b"] {
		t.Fatalf("shared tokens %q: want one token, the same on both nodes", tokens)
	}
	mu.Unlock()

	intruder := rawConn(t, srv.Addr, "")
	members, _, err := intruder.Children("/sec/members")
	if !errors.Is(err, zk.ErrNoAuth) {
		t.Fatalf("listing members without credentials: %v, want ErrNoAuth (%v)", err, members)
	}
	if _, _, err := intruder.Get("/sec/cluster-token"); !errors.Is(err, zk.ErrNoAuth) {
		t.Fatalf("reading the token without credentials: %v, want ErrNoAuth", err)
	}
	if _, err := intruder.Set("/sec/ring", []byte(`{"epoch":9,"members":[]}`), -1); !errors.Is(err, zk.ErrNoAuth) {
		t.Fatalf("replacing the ring without credentials: %v, want ErrNoAuth", err)
	}
	fake, _ := json.Marshal(membership.Member{Name: "evil", Addr: "evil:1", VNodes: 20})
	if _, err := intruder.Create("/sec/members/member-evil", fake, 0, zk.WorldACL(zk.PermAll)); !errors.Is(err, zk.ErrNoAuth) {
		t.Fatalf("adding a fake member without credentials: %v, want ErrNoAuth", err)
	}
	insider := rawConn(t, srv.Addr, creds)
	members, _, err = insider.Children("/sec/members")
	if err != nil || len(members) != 2 {
		t.Fatalf("members with credentials: %v %v", members, err)
	}
	for _, m := range members {
		if _, err := intruder.Set("/sec/members/"+m, []byte(`{"name":"a","addr":"a:1","vnodes":20,"leaving":true}`), -1); !errors.Is(err, zk.ErrNoAuth) {
			t.Fatalf("flagging member %s leaving without credentials: %v, want ErrNoAuth", m, err)
		}
	}
}

// What a client with the credentials writes is still checked: a garbage
// ring is refused (named in Problems) and the last good ring kept, and a
// node's own member record changed by someone else is restored.
func TestInvalidZooKeeperDataIsRefused(t *testing.T) {
	srv := zktest.Start(t)
	const creds = "goblocks:zk-test-password"
	var invalid sync.Map
	self := membership.Member{Name: "a", Addr: "a:1", VNodes: 20}
	st, snaps := storeRun(t, Options{Servers: []string{srv.Addr}, Root: "/bad", SessionTimeout: 2 * time.Second, Auth: creds,
		Self: self, Logger: zerolog.Nop(), OnInvalid: func(p string) { invalid.Store(p, true) }})
	waitSnap(t, snaps, "a registered", func(s membership.Snapshot) bool { return len(s.Members) == 1 })
	good := membership.RingState{Epoch: 1, Members: []membership.Member{self}}
	if err := st.InitRing(good); err != nil {
		t.Fatal(err)
	}
	waitSnap(t, snaps, "the ring", func(s membership.Snapshot) bool { return s.Ring != nil && s.Ring.Epoch == 1 })

	buggy := rawConn(t, srv.Addr, creds)
	for _, garbage := range []string{`not json`, `{"epoch":2,"members":[]}`, `{"epoch":2,"members":[{"name":"a","addr":"nohost","vnodes":20}]}`} {
		if _, err := buggy.Set("/bad/ring", []byte(garbage), -1); err != nil {
			t.Fatal(err)
		}
		s := waitSnap(t, snaps, "a snapshot after the garbage ring", func(s membership.Snapshot) bool {
			_, seen := invalid.Load("/bad/ring")
			return seen
		})
		if !s.Connected || s.Ring == nil || s.Ring.Epoch != 1 || !membership.SameRing(s.Ring.Members, good.Members) {
			t.Fatalf("after ring %q: snapshot %+v, want connected with the last good ring", garbage, s)
		}
		if p := strings.Join(st.Problems(), "\n"); !strings.Contains(p, "/bad/ring") {
			t.Fatalf("Problems %q do not name the znode", p)
		}
		invalid.Delete("/bad/ring")
	}
	data, _ := json.Marshal(membership.RingState{Epoch: 2, Members: []membership.Member{self}})
	if _, err := buggy.Set("/bad/ring", data, -1); err != nil {
		t.Fatal(err)
	}
	waitSnap(t, snaps, "the repaired ring", func(s membership.Snapshot) bool { return s.Ring != nil && s.Ring.Epoch == 2 })
	if p := st.Problems(); len(p) != 0 {
		t.Fatalf("problems after the ring was repaired: %q", p)
	}

	// Someone flags the node leaving: it restores its own record.
	children, _, err := buggy.Children("/bad/members")
	if err != nil || len(children) != 1 {
		t.Fatalf("members: %v %v", children, err)
	}
	own := "/bad/members/" + children[0]
	if _, err := buggy.Set(own, []byte(`{"name":"a","addr":"a:1","vnodes":20,"leaving":true}`), -1); err != nil {
		t.Fatal(err)
	}
	deadline := time.After(10 * time.Second)
	for {
		got, _, changed, err := buggy.GetW(own)
		var m membership.Member
		if err == nil && json.Unmarshal(got, &m) == nil && reflect.DeepEqual(m, self) {
			break
		}
		select {
		case <-changed:
		case <-deadline:
			t.Fatalf("own record still %s (%v); want it restored to %+v", got, err, self)
		}
	}
	waitSnap(t, snaps, "a not leaving", func(s membership.Snapshot) bool { return len(s.Members) == 1 && !s.Members[0].Leaving })
}
