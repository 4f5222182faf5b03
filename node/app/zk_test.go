package app

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/goblocks/goblocks/internal/testkit"
	"github.com/goblocks/goblocks/node/membership/zk/zktest"
	"github.com/goblocks/goblocks/node/migration"
	"github.com/goblocks/goblocks/node/storage"
)

// The tests in this file run nodes against a real ZooKeeper server
// (Debian's zookeeper package, started by zktest) and prove the migration
// guarantees with a workload that records every acknowledged write.

func zkCluster(t *testing.T, n int, o clusterOpts) *testCluster {
	t.Helper()
	o.zk = zktest.Start(t)
	o.zkRoot = "/goblocks-" + strings.ToLower(strings.ReplaceAll(t.Name(), "/", "-"))
	if o.grace == 0 {
		o.grace = 3 * time.Second
	}
	c := startCluster(t, n, o)
	c.t = t
	c.waitStable(t, n)
	return c
}

func (c *testCluster) running() []int {
	var out []int
	for i := range c.nodes {
		if c.stops[i] != nil {
			out = append(out, i)
		}
	}
	return out
}

// waitStable waits until every running node routes by the same committed
// ring of `members` nodes and no round runs.
func (c *testCluster) waitStable(t *testing.T, members int) migration.ClusterStatus {
	t.Helper()
	var last migration.ClusterStatus
	testkit.Eventually(t, 60*time.Second, func() error {
		var epoch int64 = -1
		for _, i := range c.running() {
			st := c.nodes[i].ClusterStatus()
			last = st
			switch {
			case !st.Connected:
				return fmt.Errorf("n%d: no session", i)
			case st.Migrating:
				return fmt.Errorf("n%d: migrating (round %s, participants %+v)", i, st.Round, st.Participants)
			case len(st.RingMembers) != members:
				return fmt.Errorf("n%d: ring %v, want %d members", i, st.RingMembers, members)
			case st.ViewEpoch != st.Epoch:
				return fmt.Errorf("n%d: routes by epoch %d, committed %d", i, st.ViewEpoch, st.Epoch)
			case epoch >= 0 && st.Epoch != epoch:
				return fmt.Errorf("n%d: epoch %d, others %d", i, st.Epoch, epoch)
			}
			epoch = st.Epoch
		}
		return nil
	})
	return last
}

// workload writes continuously through every running node, each writer
// owning its ids, and remembers the last acknowledged content of each id.
type workload struct {
	c       *testCluster
	mu      sync.Mutex
	acked   map[string][]byte
	writes  atomic.Int64
	errors  atomic.Int64
	stop    chan struct{}
	wg      sync.WaitGroup
	targets atomic.Pointer[[]int]
}

func startWorkload(t *testing.T, c *testCluster, writers, keysPerWriter int) *workload {
	w := &workload{c: c, acked: map[string][]byte{}, stop: make(chan struct{})}
	w.retarget()
	for wr := 0; wr < writers; wr++ {
		w.wg.Add(1)
		go func() {
			defer w.wg.Done()
			for k := 0; ; k++ {
				select {
				case <-w.stop:
					return
				default:
				}
				id := fmt.Sprintf("w%d-%d", wr, k%keysPerWriter)
				data := randomBlock(t)
				targets := *w.targets.Load()
				node := targets[rand.IntN(len(targets))]
				if _, err := c.put(node, id, data); err != nil {
					w.errors.Add(1)
					continue
				}
				w.writes.Add(1)
				w.mu.Lock()
				w.acked[id] = data
				w.mu.Unlock()
			}
		}()
	}
	return w
}

// retarget sends later writes only to the nodes running now.
func (w *workload) retarget() {
	r := w.c.running()
	w.targets.Store(&r)
}

func (w *workload) finish() {
	close(w.stop)
	w.wg.Wait()
}

// verify reads every acknowledged id through every running node and
// returns how many reads did not return the last acknowledged content.
func (w *workload) verify(t *testing.T) (acked, lost int) {
	t.Helper()
	w.mu.Lock()
	defer w.mu.Unlock()
	for id, data := range w.acked {
		for _, i := range w.c.running() {
			got, _, err := w.c.get(i, id)
			if err != nil || !bytes.Equal(got, data) {
				lost++
				if lost <= 5 {
					t.Errorf("%s via n%d: %v (content matches: %v); local versions %v", id, i, err, bytes.Equal(got, data), w.c.localVersions(id))
				}
			}
		}
	}
	return len(w.acked), lost
}

// preload writes n blocks so a migration has data to move.
func preload(t *testing.T, c *testCluster, n int) map[string][]byte {
	want := map[string][]byte{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for k := g; k < n; k += 8 {
				id := fmt.Sprintf("pre-%d", k)
				data := randomBlock(t)
				if _, err := c.put(k%len(c.running()), id, data); err != nil {
					errs <- err
					return
				}
				mu.Lock()
				want[id] = data
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	return want
}

// checkPlacement asserts that, once stale copies are collected, every id
// is held (non-stale) by exactly its RF owners and by no other node.
func (c *testCluster) checkPlacement(t *testing.T, ids []string) {
	t.Helper()
	v := c.nodes[c.running()[0]].coord.View()
	testkit.Eventually(t, 30*time.Second, func() error {
		for _, id := range ids {
			owners := v.Current.OwnerNames(id, v.RF)
			sort.Strings(owners)
			var holders []string
			for _, i := range c.running() {
				m, err := c.nodes[i].Engine().GetMeta(id)
				if errors.Is(err, storage.ErrNotFound) {
					continue
				}
				if err != nil {
					return err
				}
				if !m.StaleSince.IsZero() {
					return fmt.Errorf("%s: n%d still holds a stale copy", id, i)
				}
				holders = append(holders, c.cfgs[i].ReplicaName)
			}
			sort.Strings(holders)
			if strings.Join(holders, ",") != strings.Join(owners, ",") {
				return fmt.Errorf("%s held by %v, owners %v", id, holders, owners)
			}
		}
		return nil
	})
}

func keys(m map[string][]byte) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	return out
}

func TestZKJoinUnderWrites(t *testing.T) {
	c := zkCluster(t, 3, clusterOpts{grace: 4 * time.Second})
	pre := preload(t, c, 3000)
	before := c.waitStable(t, 3)
	w := startWorkload(t, c, 6, 40)
	time.Sleep(300 * time.Millisecond) // let the workload run before the join (not a wait for a condition)
	start := time.Now()
	joined := c.addNode(t)
	after := c.waitStable(t, 4)
	secs := time.Since(start).Seconds()
	w.retarget()
	time.Sleep(300 * time.Millisecond) // writes through the new node too
	w.finish()

	// Stale copies stay readable until the grace period ends.
	stale := 0
	for _, i := range c.running() {
		for _, id := range keys(pre) {
			m, err := c.nodes[i].Engine().GetMeta(id)
			if err == nil && !m.StaleSince.IsZero() && time.Since(m.StaleSince) < c.cfgs[i].StaleGracePeriod {
				status, body, hdr, err := c.do("GET", c.url(i, "/internal/block/"+id), nil)
				if err != nil || status != 200 || hdr.Get("X-Goblocks-State") != "stale" || !bytes.Equal(body, pre[id]) {
					t.Fatalf("stale copy of %s on n%d not readable: %d %v %s", id, i, status, err, hdr.Get("X-Goblocks-State"))
				}
				stale++
			}
		}
	}
	if stale == 0 {
		t.Fatal("no stale copy found right after the join: the test would not see copies moving away")
	}
	acked, lost := w.verify(t)
	for id, data := range pre {
		if got, _, err := c.get(joined, id); err != nil || !bytes.Equal(got, data) {
			lost++
			t.Errorf("preloaded %s via new node: %v", id, err)
		}
	}
	if lost != 0 {
		t.Fatalf("lost %d acknowledged writes", lost)
	}
	c.checkPlacement(t, append(keys(pre), keys(w.acked)...))
	// The new node receives only in this join; every old owner of a moved
	// block sends its copy, so it receives up to RF copies of each.
	recv := c.nodes[joined].ClusterStatus().Transfer
	var roundSecs float64
	for _, i := range c.running() {
		if lr := c.nodes[i].ClusterStatus().LastRound; lr != nil && lr.Epoch > before.Epoch {
			roundSecs = max(roundSecs, lr.Seconds)
		}
	}
	if recv.ReceivedBlocks == 0 {
		t.Fatal("the join moved no blocks to the new node")
	}
	checkJoinMetrics(t, c, joined, after.Epoch, recv.ReceivedBlocks)
	t.Logf("join: epoch %d -> %d, %.2fs from start to stable (round %.2fs); acknowledged writes %d (ids %d), client errors %d, lost 0; "+
		"new node received %d blocks (%.1f MB, from every old owner), %.1f MB/s over the round; stale copies readable before GC: %d",
		before.Epoch, after.Epoch, secs, roundSecs, w.writes.Load(), acked, w.errors.Load(), recv.ReceivedBlocks,
		float64(recv.ReceivedBytes)/1e6, float64(recv.ReceivedBytes)/1e6/max(roundSecs, 1e-3), stale)
}

func TestZKLeaveAndCrashUnderWrites(t *testing.T) {
	c := zkCluster(t, 5, clusterOpts{grace: 2 * time.Second})
	pre := preload(t, c, 1500)
	w := startWorkload(t, c, 6, 40)
	time.Sleep(300 * time.Millisecond)

	// Graceful leave: the node hands its data over before it exits.
	w.targets.Store(&[]int{0, 1, 2, 3})
	start := time.Now()
	c.stop(4)
	c.waitStable(t, 4)
	leaveSecs := time.Since(start).Seconds()

	// Crash: the survivors restore RF from their replicas.
	w.targets.Store(&[]int{0, 1, 2})
	start = time.Now()
	c.kill(3)
	c.waitStable(t, 3)
	crashSecs := time.Since(start).Seconds()
	time.Sleep(300 * time.Millisecond)
	w.finish()

	acked, lost := w.verify(t)
	for id, data := range pre {
		if got, _, err := c.get(0, id); err != nil || !bytes.Equal(got, data) {
			lost++
			t.Errorf("preloaded %s: %v", id, err)
		}
	}
	if lost != 0 {
		t.Fatalf("lost %d acknowledged writes", lost)
	}
	c.checkPlacement(t, append(keys(pre), keys(w.acked)...))
	t.Logf("graceful leave %.2fs, crash recovery %.2fs; acknowledged writes %d (ids %d), client errors %d, lost 0; RF=3 restored on 3 nodes",
		leaveSecs, crashSecs, w.writes.Load(), acked, w.errors.Load())
}

func TestZKJoinsDuringMigrationBatched(t *testing.T) {
	// A slow transfer keeps the first round open while two more nodes join.
	c := zkCluster(t, 3, clusterOpts{rateBps: 2 << 20})
	pre := preload(t, c, 1500)
	before := c.waitStable(t, 3)
	c.addNode(t)
	testkit.Eventually(t, 30*time.Second, func() error {
		if !c.nodes[0].ClusterStatus().Migrating {
			return errors.New("no round running yet")
		}
		return nil
	})
	c.addNode(t)
	c.addNode(t)
	testkit.Eventually(t, 10*time.Second, func() error {
		if !c.nodes[0].ClusterStatus().Pending {
			return errors.New("pending flag not set")
		}
		return nil
	})
	after := c.waitStable(t, 6)
	if rounds := after.Epoch - before.Epoch; rounds > 2 {
		t.Fatalf("%d rounds for three joins that came during one round; want at most 2", rounds)
	}
	for id, data := range pre {
		if got, _, err := c.get(5, id); err != nil || !bytes.Equal(got, data) {
			t.Fatalf("%s via the last node: %v", id, err)
		}
	}
	c.checkPlacement(t, keys(pre))
	t.Logf("three joins: epoch %d -> %d (%d rounds)", before.Epoch, after.Epoch, after.Epoch-before.Epoch)
}

func TestZKParticipantKilledMidMigration(t *testing.T) {
	// A slow transfer keeps the round open until the kill.
	c := zkCluster(t, 4, clusterOpts{rateBps: 512 << 10})
	pre := preload(t, c, 1500)
	w := startWorkload(t, c, 4, 30)
	c.addNode(t)
	testkit.Eventually(t, 30*time.Second, func() error {
		st := c.nodes[0].ClusterStatus()
		if !st.Migrating {
			return errors.New("no round running yet")
		}
		return nil
	})
	w.targets.Store(&[]int{0, 1, 2, 4})
	c.kill(3) // a participant with data to send
	st := c.waitStable(t, 4)
	var aborted int64
	for _, i := range c.running() {
		aborted += c.nodes[i].ClusterStatus().RoundsAborted
	}
	if aborted == 0 {
		t.Fatal("no node aborted the round whose participant died")
	}
	time.Sleep(200 * time.Millisecond)
	w.finish()
	acked, lost := w.verify(t)
	for id, data := range pre {
		if got, _, err := c.get(4, id); err != nil || !bytes.Equal(got, data) {
			lost++
			t.Errorf("preloaded %s: %v", id, err)
		}
	}
	if lost != 0 {
		t.Fatalf("lost %d acknowledged writes", lost)
	}
	c.checkPlacement(t, append(keys(pre), keys(w.acked)...))
	t.Logf("participant killed mid-round: round aborted (%d aborts seen), converged at epoch %d with ring %v; acknowledged writes %d (ids %d), client errors %d, lost 0",
		aborted, st.Epoch, st.RingMembers, w.writes.Load(), acked, w.errors.Load())
}

// Once its session may have expired, a node must not coordinate: it
// cannot know whether a migration started without it, so it answers 503
// instead of writing by a ring that may be stale. (Until then it keeps
// serving: see TestLinearizableUnderFaults' ZooKeeper restart.)
func TestZKNoSessionRefusesRequests(t *testing.T) {
	c := zkCluster(t, 3, clusterOpts{storage: "memory"})
	if _, err := c.put(0, "before", randomBlock(t)); err != nil {
		t.Fatal(err)
	}
	c.opts.zk.Stop()
	var refused []string
	attempt := 0
	testkit.Eventually(t, 30*time.Second, func() error {
		for i := range c.nodes {
			attempt++
			id := fmt.Sprintf("after-%d", attempt)
			status, body, _, err := c.do("PUT", c.url(i, "/block/"+id), randomBlock(t))
			if err != nil {
				return err
			}
			if status != 503 || !strings.Contains(string(body), "no session") {
				return fmt.Errorf("n%d answered %d %s, want 503 without a session", i, status, body)
			}
			refused = append(refused, id)
			status, _, _, _ = c.do("GET", c.url(i, "/health"), nil)
			if status != 503 {
				return fmt.Errorf("n%d health %d, want 503", i, status)
			}
		}
		return nil
	})
	for i, n := range c.nodes {
		for _, id := range refused {
			if _, err := n.Engine().GetMeta(id); err == nil {
				t.Fatalf("n%d stored %s, a write it refused", i, id)
			}
		}
	}
}

// checkJoinMetrics holds the migration, ring, GC and session metrics to
// what the join did: they must agree with the cluster's own status.
func checkJoinMetrics(t *testing.T, c *testCluster, joined int, epoch int64, received int64) {
	t.Helper()
	var sent, recvd, share float64
	for _, i := range c.running() {
		reg := c.nodes[i].Registry()
		want := map[string]float64{
			"blocks_ring_members": 4, "blocks_ring_epoch": float64(epoch), "blocks_migration_active": 0,
			"blocks_migration_pending": 0, "blocks_zookeeper_session_connected": 1,
		}
		for name, v := range want {
			if got := gatheredValue(t, reg, name); got != v {
				t.Errorf("n%d %s = %v, want %v", i, name, got, v)
			}
		}
		if got := gatheredValue(t, reg, "blocks_migration_rounds_total", "outcome", "committed"); got < 1 {
			t.Errorf("n%d saw %v committed rounds", i, got)
		}
		sent += gatheredValue(t, reg, "blocks_migration_sent_blocks_total")
		recvd += gatheredValue(t, reg, "blocks_migration_received_blocks_total")
		share += gatheredValue(t, reg, "blocks_ring_owned_share")
	}
	if got := gatheredValue(t, c.nodes[joined].Registry(), "blocks_migration_received_blocks_total"); got != float64(received) {
		t.Errorf("new node's received counter %v, status says %d", got, received)
	}
	// Every block sent was received (transfers are acknowledged batches).
	if sent == 0 || sent != recvd {
		t.Errorf("cluster sent %v blocks and received %v", sent, recvd)
	}
	if share < 0.999 || share > 1.001 {
		t.Errorf("owned shares sum to %v, want 1", share)
	}
	// Stale copies are collected once the grace period ends.
	testkit.Eventually(t, 20*time.Second, func() error {
		var stale, collected float64
		for _, i := range c.running() {
			stale += gatheredValue(t, c.nodes[i].Registry(), "blocks_stale_count")
			collected += gatheredValue(t, c.nodes[i].Registry(), "blocks_gc_collected_total")
		}
		if stale != 0 || collected == 0 {
			return fmt.Errorf("stale %v, collected %v", stale, collected)
		}
		return nil
	})
}

// gatheredValue reads one sample (counter, gauge or untyped) from reg;
// labels are name, value pairs. A missing series reads as 0.
func gatheredValue(t *testing.T, reg *prometheus.Registry, name string, labels ...string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	metrics:
		for _, m := range mf.GetMetric() {
			for i := 0; i+1 < len(labels); i += 2 {
				found := false
				for _, lp := range m.GetLabel() {
					if lp.GetName() == labels[i] && lp.GetValue() == labels[i+1] {
						found = true
					}
				}
				if !found {
					continue metrics
				}
			}
			switch {
			case m.Counter != nil:
				return m.Counter.GetValue()
			case m.Gauge != nil:
				return m.Gauge.GetValue()
			case m.Untyped != nil:
				return m.Untyped.GetValue()
			}
		}
	}
	return 0
}
