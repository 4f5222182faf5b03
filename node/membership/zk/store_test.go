package zk

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/go-zookeeper/zk"
	"github.com/rs/zerolog"

	"github.com/goblocks/goblocks/node/membership"
	"github.com/goblocks/goblocks/node/membership/zk/zktest"
)

// A node that restarts before ZooKeeper expires its old session has two
// member znodes for a while. The snapshot must list it once, as its latest
// registration says (the e2e restart scenario once saw a target ring
// holding a name twice).
func TestDuplicateRegistrationListedOnce(t *testing.T) {
	srv := zktest.Start(t)
	st, err := New(Options{Servers: []string{srv.Addr}, Root: "/dup", SessionTimeout: 2 * time.Second,
		Self: membership.Member{Name: "a", Addr: "old:1", VNodes: 20}, Logger: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	snaps := make(chan membership.Snapshot, 64)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = st.Run(ctx, func(s membership.Snapshot) { snaps <- s }) }()
	defer func() { cancel(); <-done }()
	waitFor := func(what string, ok func(membership.Snapshot) bool) membership.Snapshot {
		t.Helper()
		return waitSnap(t, snaps, what, ok)
	}
	waitFor("a registered", func(s membership.Snapshot) bool { return len(s.Members) == 1 })

	// Another session registers "a" again (the restarted process) and "b"
	// twice, the later one with a new address.
	conn, _, err := zk.Connect([]string{srv.Addr}, 2*time.Second, zk.WithLogger(zk.DefaultLogger))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	for _, m := range []membership.Member{{Name: "a", Addr: "new:1", VNodes: 20}, {Name: "b", Addr: "b-old:1", VNodes: 20}, {Name: "b", Addr: "b-new:1", VNodes: 20}} {
		data, _ := json.Marshal(m)
		if _, err := conn.CreateProtectedEphemeralSequential("/dup/members/member-", data, zk.WorldACL(zk.PermAll)); err != nil {
			t.Fatal(err)
		}
	}
	s := waitFor("a and b once each", func(s membership.Snapshot) bool { return len(s.Members) == 2 })
	got := fmt.Sprint(s.Members[0].Name, s.Members[0].Addr, " ", s.Members[1].Name, s.Members[1].Addr)
	if got != "anew:1 bb-new:1" {
		t.Fatalf("members %s; want each name once with its latest registration", got)
	}
}

func TestLatestPerName(t *testing.T) {
	mem := func(name, addr string) membership.Member {
		return membership.Member{Name: name, Addr: addr, VNodes: 20}
	}
	for _, tc := range []struct {
		name string
		regs []registration
		want string
	}{
		{"distinct", []registration{{3, mem("c", "c")}, {1, mem("a", "a")}, {2, mem("b", "b")}}, "[a@a b@b c@c]"},
		// Children come in no particular order: adjacent duplicates once
		// left a name twice in the member list.
		{"adjacent duplicate", []registration{{1, mem("n1", "x")}, {3, mem("n3", "old")}, {7, mem("n3", "new")}, {2, mem("n2", "x")}}, "[n1@x n2@x n3@new]"},
		{"newest wins whatever the order", []registration{{9, mem("a", "new")}, {4, mem("a", "old")}}, "[a@new]"},
		{"none", nil, "[]"},
	} {
		var got []string
		for _, m := range latestPerName(tc.regs) {
			got = append(got, m.Name+"@"+m.Addr)
		}
		if s := fmt.Sprint(got); s != tc.want && !(s == "[]" && tc.want == "[]") {
			t.Errorf("%s: %s, want %s", tc.name, s, tc.want)
		}
	}
	if sequence("_c_0f3a-member-0000000042") != 42 || sequence("x") != -1 {
		t.Error("sequence parsing")
	}
}
