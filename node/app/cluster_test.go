package app

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/goblocks/goblocks/internal/testkit"
	"github.com/goblocks/goblocks/node/adminapi"
	"github.com/goblocks/goblocks/node/config"
	"github.com/goblocks/goblocks/node/hlc"
)

func TestEveryNodeCoordinates(t *testing.T) {
	c := startCluster(t, 3, clusterOpts{})
	for writer := 0; writer < 3; writer++ {
		id := fmt.Sprintf("block-%d", writer)
		data := randomBlock(t)
		if _, err := c.put(writer, id, data); err != nil {
			t.Fatal(err)
		}
		for reader := 0; reader < 3; reader++ {
			got, _, err := c.get(reader, id)
			if err != nil {
				t.Fatalf("read %s via n%d: %v", id, reader, err)
			}
			if !bytes.Equal(got, data) {
				t.Fatalf("read %s via n%d: content differs", id, reader)
			}
		}
		// RF=3 on 3 nodes: every node holds a copy once the background
		// replica calls finish.
		testkit.Eventually(t, 5*time.Second, func() error {
			for i, v := range c.localVersions(id) {
				if v == "" {
					return fmt.Errorf("n%d has no copy of %s", i, id)
				}
			}
			return nil
		})
		status, _, _, err := c.do(http.MethodDelete, c.url((writer+1)%3, "/block/"+id), nil)
		if err != nil || status != http.StatusNoContent {
			t.Fatalf("delete: %d %v", status, err)
		}
		for reader := 0; reader < 3; reader++ {
			if _, _, err := c.get(reader, id); err != errNotFound {
				t.Fatalf("read deleted %s via n%d: %v, want not found", id, reader, err)
			}
		}
	}
}

func TestQuorumWithOneNodeDown(t *testing.T) {
	c := startCluster(t, 3, clusterOpts{})
	before := randomBlock(t)
	if _, err := c.put(0, "q", before); err != nil {
		t.Fatal(err)
	}
	c.stop(2)
	after := randomBlock(t)
	for i := 0; i < 2; i++ {
		if _, err := c.put(i, "q", after); err != nil {
			t.Fatalf("quorum write with one node down via n%d: %v", i, err)
		}
		got, _, err := c.get(i, "q")
		if err != nil || !bytes.Equal(got, after) {
			t.Fatalf("quorum read via n%d: %v (content equal: %v)", i, err, bytes.Equal(got, after))
		}
	}
	status, body, _, err := c.do(http.MethodPut, c.url(0, "/block/q?consistency=all"), randomBlock(t))
	if err != nil || status != http.StatusServiceUnavailable {
		t.Fatalf("consistency=all with a node down: %d %s %v, want 503", status, body, err)
	}
	status, _, _, err = c.do(http.MethodGet, c.url(0, "/block/q?consistency=one"), nil)
	if err != nil || status != http.StatusOK {
		t.Fatalf("consistency=one read: %d %v", status, err)
	}
	c.stop(1)
	status, _, _, _ = c.do(http.MethodPut, c.url(0, "/block/q"), randomBlock(t))
	if status != http.StatusServiceUnavailable {
		t.Fatalf("quorum write with two of three down: %d, want 503", status)
	}
}

func TestStoppedReplicaRepairedByRead(t *testing.T) {
	c := startCluster(t, 3, clusterOpts{})
	if _, err := c.put(0, "r", randomBlock(t)); err != nil {
		t.Fatal(err)
	}
	c.stop(2)
	newest := randomBlock(t)
	version, err := c.put(0, "r", newest)
	if err != nil {
		t.Fatal(err)
	}
	c.restart(t, 2)
	if v := c.localVersions("r")[2]; v == version {
		t.Fatalf("n2 already has %s before any read; the test would prove nothing", v)
	}
	// n2 coordinates: it reads its own (stale) copy first, sees a newer
	// version at its peer, answers with the newest and repairs itself.
	got, _, err := c.get(2, "r")
	if err != nil || !bytes.Equal(got, newest) {
		t.Fatalf("read via restarted n2: %v (content equal: %v)", err, bytes.Equal(got, newest))
	}
	testkit.Eventually(t, 5*time.Second, func() error {
		if v := c.localVersions("r")[2]; v != version {
			return fmt.Errorf("n2 holds %q, want %q", v, version)
		}
		return nil
	})
}

func TestConcurrentWritersConverge(t *testing.T) {
	c := startCluster(t, 3, clusterOpts{})
	const writers, writes = 12, 15
	var mu sync.Mutex
	var acked []hlc.Version
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	for w := 0; w < writers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < writes; i++ {
				v, err := c.put(w%3, "hot", randomBlock(t))
				if err != nil {
					errs <- err
					return
				}
				pv, err := hlc.ParseVersion(v)
				if err != nil {
					errs <- err
					return
				}
				mu.Lock()
				acked = append(acked, pv)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	sort.Slice(acked, func(i, j int) bool { return acked[i].Compare(acked[j]) < 0 })
	newest := acked[len(acked)-1].String()
	c.waitVersion(t, "hot", newest)
	_, v, err := c.get(1, "hot")
	if err != nil || v != newest {
		t.Fatalf("read returns %s (%v), want %s", v, err, newest)
	}
}

func TestRestartKeepsAcknowledgedBlocks(t *testing.T) {
	c := startCluster(t, 3, clusterOpts{})
	const blocks = 150
	want := map[string][]byte{}
	for i := 0; i < blocks; i++ {
		id := fmt.Sprintf("durable-%d", i)
		want[id] = randomBlock(t)
		if _, err := c.put(i%3, id, want[id]); err != nil {
			t.Fatal(err)
		}
	}
	// Stop every node (no copy survives in memory), then start them again
	// on their data directories.
	c.stopAll()
	for i := range c.nodes {
		c.start(t, i, nil)
	}
	lost := 0
	for id, data := range want {
		got, _, err := c.get(1, id)
		if err != nil || !bytes.Equal(got, data) {
			lost++
			t.Errorf("%s after restart: %v", id, err)
		}
	}
	t.Logf("acknowledged=%d lost=%d after full-cluster restart", blocks, lost)
}

// The admin endpoints describe the ring and the node's own store.
func TestAdminRingAndCluster(t *testing.T) {
	c := startCluster(t, 3, clusterOpts{storage: "memory"})
	if _, err := c.put(0, "admin-1", randomBlock(t)); err != nil {
		t.Fatal(err)
	}
	status, body, _, err := c.do("GET", c.url(1, "/admin/ring"), nil)
	if err != nil || status != 200 {
		t.Fatalf("/admin/ring: %d %v", status, err)
	}
	var rs RingStatus
	if err := json.Unmarshal(body, &rs); err != nil {
		t.Fatal(err)
	}
	if rs.Ring == nil || len(rs.Ring.Members) != 3 || len(rs.Ring.VNodes) != 3*20 || rs.RF != 3 {
		t.Fatalf("ring status %+v", rs)
	}
	var share float64
	for _, m := range rs.Ring.Members {
		share += m.Share
	}
	if share < 0.999 || share > 1.001 {
		t.Fatalf("shares sum to %v", share)
	}
	// The write is acknowledged at quorum; n2's copy may land a moment later.
	testkit.Eventually(t, 5*time.Second, func() error {
		status, body, _, err := c.do("GET", c.url(2, "/admin/cluster"), nil)
		if err != nil || status != 200 {
			t.Fatalf("/admin/cluster: %d %v", status, err)
		}
		var ns NodeStatus
		if err := json.Unmarshal(body, &ns); err != nil {
			t.Fatal(err)
		}
		if ns.Node != "n2" || ns.Blocks != 1 || ns.Addr == "" || len(ns.RingMembers) != 3 {
			return fmt.Errorf("node status %+v", ns)
		}
		return nil
	})
}

// Hinted handoff: writes a replica missed while it was down reach it when
// it returns, without any read to repair them.
func TestHintedHandoffCatchesUpAReturningReplica(t *testing.T) {
	c := startCluster(t, 3, clusterOpts{})
	c.stop(2)
	written := map[string][]byte{}
	for i := 0; i < 50; i++ {
		id := fmt.Sprintf("hinted-%02d", i)
		data := randomBlock(t)
		if _, err := c.put(i%2, id, data); err != nil {
			t.Fatalf("put %s with one replica down: %v", id, err)
		}
		written[id] = data
	}
	// A write is acknowledged at quorum: its failed call to n2 (and so
	// its hint) may come a moment later.
	testkit.Eventually(t, 5*time.Second, func() error {
		pending := gatheredValue(t, c.nodes[0].Registry(), "blocks_hints_stored_total") +
			gatheredValue(t, c.nodes[1].Registry(), "blocks_hints_stored_total")
		if pending != 50 {
			return fmt.Errorf("%v hints stored for 50 writes n2 missed", pending)
		}
		return nil
	})
	c.restart(t, 2)
	testkit.Eventually(t, 15*time.Second, func() error {
		missing := 0
		for id, data := range written {
			rec, err := c.nodes[2].Engine().Get(id)
			if err != nil || !bytes.Equal(rec.Data, data) {
				missing++
			}
		}
		if missing > 0 {
			return fmt.Errorf("n2 still lacks %d of 50 blocks", missing)
		}
		return nil
	})
	// The counters move after the replica has the data.
	testkit.Eventually(t, 5*time.Second, func() error {
		delivered := gatheredValue(t, c.nodes[0].Registry(), "blocks_hints_delivered_total") +
			gatheredValue(t, c.nodes[1].Registry(), "blocks_hints_delivered_total")
		if delivered != 50 {
			return fmt.Errorf("delivered counters say %v", delivered)
		}
		return nil
	})
}

// Go profiles sit under /admin, so AdminToken guards them like the rest.
func TestProfilesNeedAdminToken(t *testing.T) {
	const admin = "admin-token-0123456789"
	c := startCluster(t, 1, clusterOpts{storage: "memory", rf: 1, configure: func(_ int, cfg *config.Config) { cfg.AdminToken = admin }})
	bearer := []string{"Authorization", "Bearer " + admin}
	for _, tc := range []struct {
		path   string
		hdr    []string
		status int
	}{
		{"/admin/pprof/heap", nil, http.StatusUnauthorized},
		{"/admin/pprof/profile?seconds=1", nil, http.StatusUnauthorized},
		{"/admin/pprof/heap", bearer, http.StatusOK},
		{"/admin/pprof/goroutine?debug=1", bearer, http.StatusOK},
		{"/admin/pprof/nope", bearer, http.StatusNotFound},
	} {
		status, body, _, err := c.do(http.MethodGet, c.url(0, tc.path), nil, tc.hdr...)
		if err != nil || status != tc.status {
			t.Errorf("GET %s (token %v): %d %.80s %v, want %d", tc.path, tc.hdr != nil, status, body, err, tc.status)
		}
	}
}

// What the admin endpoints write is exactly the contract package client
// reads: every field decodes, none is left over.
func TestAdminJSONIsTheContract(t *testing.T) {
	c := startCluster(t, 3, clusterOpts{storage: "memory"})
	for path, into := range map[string]any{"/admin/cluster": &adminapi.NodeStatus{}, "/admin/ring": &adminapi.RingStatus{}} {
		status, body, _, err := c.do(http.MethodGet, c.url(0, path), nil)
		if err != nil || status != http.StatusOK {
			t.Fatalf("GET %s: %d %v", path, status, err)
		}
		dec := json.NewDecoder(bytes.NewReader(body))
		dec.DisallowUnknownFields()
		if err := dec.Decode(into); err != nil {
			t.Errorf("%s does not decode into the contract: %v\n%s", path, err, body)
		}
	}
}

// /admin/members gathers every member's block counts through one node,
// and says which member did not answer.
func TestAdminMembers(t *testing.T) {
	c := startCluster(t, 3, clusterOpts{storage: "memory"})
	blocks := acked{}
	c.writeAcked(t, []int{0}, "m", 10, blocks)
	// A write is acknowledged by a quorum; let the third copy land too.
	for id := range blocks {
		c.waitReplicated(t, id)
	}
	get := func() []adminapi.MemberStatus {
		status, body, _, err := c.do(http.MethodGet, c.url(0, "/admin/members"), nil)
		if err != nil || status != http.StatusOK {
			t.Fatalf("GET /admin/members: %d %v", status, err)
		}
		var ms []adminapi.MemberStatus
		dec := json.NewDecoder(bytes.NewReader(body))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&ms); err != nil {
			t.Fatal(err)
		}
		return ms
	}
	ms := get()
	if len(ms) != 3 {
		t.Fatalf("%d members, want 3: %+v", len(ms), ms)
	}
	for _, m := range ms {
		// RF=3 on 3 nodes: every node holds every block.
		if !m.Reachable || m.Blocks != 10 || m.OwnedBlocks != 10 || m.StaleBlocks != 0 {
			t.Errorf("%+v, want reachable with 10 owned blocks", m)
		}
	}
	c.stop(2)
	for _, m := range get() {
		if m.Name == "n2" && (m.Reachable || m.Error == "") {
			t.Errorf("stopped n2: %+v, want unreachable with the reason", m)
		}
	}
}
