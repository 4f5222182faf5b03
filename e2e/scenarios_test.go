//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	goblocks "github.com/goblocks/goblocks/client"
)

// figures is what every scenario reports.
type figures struct {
	acked      int64 // acknowledged writes
	ids        int   // ids with an acknowledged write
	lost       int64 // must be 0
	violations int64 // concurrent reads older than the acknowledged state: must be 0
	migSecs    float64
	moved      int64
	changeErrs int64 // client errors (writes and reads) during the topology change
	extra      string
}

func (f figures) log(t *testing.T, scenario string) {
	t.Helper()
	mig := "n/a"
	if f.migSecs > 0 {
		mig = fmt.Sprintf("%.1fs", f.migSecs)
	}
	t.Logf("FIGURES %s: acknowledged writes %d (%d ids), lost %d, stale/invalid concurrent reads %d, migration %s, blocks moved %d, client errors during the topology change %d%s",
		scenario, f.acked, f.ids, f.lost, f.violations, mig, f.moved, f.changeErrs, f.extra)
}

// finishWorkload verifies every acknowledged write through every active
// node and fails the test on any loss.
func finishWorkload(t *testing.T, w *workload, f *figures) {
	t.Helper()
	ids, lost := w.verify(t)
	f.acked, f.ids, f.lost, f.violations = w.acks.Load(), ids, f.lost+lost, w.violations.Load()
	if f.acked == 0 {
		t.Error("the workload got no write acknowledged")
	}
	if f.lost != 0 || f.violations != 0 {
		t.Errorf("lost %d acknowledged writes, %d bad concurrent reads", f.lost, f.violations)
	}
}

// Scenario 1: the original's curl examples, then create, read, overwrite
// and delete with every node as the coordinator.
func TestCRUDThroughEveryNode(t *testing.T) {
	c := startCluster(t, clusterOpts{nodes: 3})
	w := startWorkload(t, c)
	ns := c.active()
	a, b, cc := ns[0], ns[1], ns[2]

	// dd if=/dev/urandom of=block.bin bs=4096 count=1
	// curl -X PUT --data-binary @block.bin http://A/block/myblock
	block := randomBlock()
	version, err := c.put(a, "myblock", block)
	if err != nil || version == "" {
		t.Fatalf("PUT via %s: version %q, %v", a.name, version, err)
	}
	// curl http://B/block/myblock -o retrieved.bin && cmp block.bin retrieved.bin
	code, body, err := c.get(b, "myblock")
	if err != nil || code != http.StatusOK || !bytes.Equal(body, block) {
		t.Fatalf("GET via %s: %d, %d bytes, identical %v, %v", b.name, code, len(body), bytes.Equal(body, block), err)
	}
	// curl -X DELETE http://C/block/myblock
	if err := c.del(cc, "myblock"); err != nil {
		t.Fatalf("DELETE via %s: %v", cc.name, err)
	}
	expectEverywhere(t, c, "myblock", nil)

	for _, coord := range ns {
		id := "crud-" + coord.name
		v1, v2 := randomBlock(), randomBlock()
		for _, data := range [][]byte{v1, v2} { // create, then overwrite
			if _, err := c.put(coord, id, data); err != nil {
				t.Fatalf("PUT %s via %s: %v", id, coord.name, err)
			}
			expectEverywhere(t, c, id, data)
		}
		if err := c.del(coord, id); err != nil {
			t.Fatalf("DELETE %s via %s: %v", id, coord.name, err)
		}
		expectEverywhere(t, c, id, nil)
	}

	for _, n := range ns {
		h, err := c.api(n).Health(context.Background(), "")
		if err != nil || h.Status != "ok" {
			t.Errorf("/health on %s: %+v %v", n.name, h, err)
		}
		code, body, _, err := c.do(http.MethodGet, n.base()+"/metrics", nil)
		if err != nil || code != http.StatusOK || !strings.Contains(string(body), "\nblocks_put_count ") {
			t.Errorf("/metrics on %s: %d, blocks_put_count present %v, %v", n.name, code, strings.Contains(string(body), "blocks_put_count"), err)
		}
	}
	time.Sleep(3 * time.Second) // let the workload run a while on the stable cluster
	var f figures
	finishWorkload(t, w, &f)
	f.changeErrs = w.writeErrs.Load() + w.readErrs.Load() // no topology change: every client error
	f.log(t, "crud")
}

// expectEverywhere checks that GET id returns want through every active
// node (nil: 404). Writes and reads are quorum operations (R + W > RF), so
// every node must agree at once, without waiting.
func expectEverywhere(t *testing.T, c *cluster, id string, want []byte) {
	t.Helper()
	for _, n := range c.active() {
		code, body, err := c.get(n, id)
		switch {
		case err != nil:
			t.Fatalf("GET %s via %s: %v", id, n.name, err)
		case want == nil && code != http.StatusNotFound:
			t.Fatalf("GET %s via %s after DELETE: %d, want 404", id, n.name, code)
		case want != nil && (code != http.StatusOK || !bytes.Equal(body, want)):
			t.Fatalf("GET %s via %s: %d, byte-identical %v", id, n.name, code, bytes.Equal(body, want))
		}
	}
}

// Scenario 2: a fourth node joins under writes.
func TestJoinFourthNode(t *testing.T) {
	c := startCluster(t, clusterOpts{nodes: 3})
	pre := preload(t, c, 600)
	before := c.waitStable(t, names(c.active()))
	beforeRing, err := c.ringTable(c.active()[0])
	if err != nil {
		t.Fatal(err)
	}
	recv0 := c.received(t)
	w := startWorkload(t, c)
	time.Sleep(2 * time.Second) // the workload runs before the join

	w.openWindow()
	start := time.Now()
	c.startNodes(t, "node4")
	after := c.waitStable(t, []string{"node1", "node2", "node3", "node4"})
	secs := time.Since(start).Seconds()
	changeErrs := w.closeWindow()

	// Right after the swap, the copies that moved away are stale but
	// still readable, byte-identical, on the node that lost them.
	stale, unmarked := staleReadable(t, c, pre, beforeRing)
	if stale == 0 {
		t.Fatalf("no stale copy readable right after the join (%d not yet marked)", unmarked)
	}
	time.Sleep(2 * time.Second) // writes through the new node too
	var f figures
	f.lost = checkPreloaded(t, c, pre)
	finishWorkload(t, w, &f)
	// The grace period ends: stale copies are collected and every block is
	// on exactly its owners.
	rep := c.checkPlacement(t, append(keys(pre), w.ackedIDs()...), c.opts.grace+60*time.Second)
	f.migSecs, f.moved, f.changeErrs = secs, c.movedSince(t, recv0), changeErrs
	f.extra = fmt.Sprintf("; epoch %d -> %d, round %.1fs; stale copies readable in the grace period %d (%d not yet marked stale at the probe; all collected after it); placement exact for %d ids (%d with diverged owner versions)",
		before.Epoch, after.Epoch, c.lastRoundSeconds(t, before.Epoch), stale, unmarked, rep.ids, rep.diverged)
	f.log(t, "join")
}

// staleReadable reads, on each old node that stopped owning a preloaded
// block, its local copy: it must be marked stale and byte-identical. It
// returns how many were, and how many were not marked stale yet.
func staleReadable(t *testing.T, c *cluster, pre map[string][]byte, beforeRing *goblocks.RingTable) (stale, unmarked int) {
	t.Helper()
	afterRing, err := c.ringTable(c.active()[0])
	if err != nil {
		t.Fatal(err)
	}
	oldModel, err := newRingModel(beforeRing)
	if err != nil {
		t.Fatal(err)
	}
	newModel, err := newRingModel(afterRing)
	if err != nil {
		t.Fatal(err)
	}
	type probe struct {
		id   string
		node *node
	}
	var probes []probe
	for id := range pre {
		for _, name := range oldModel.owners(id, rf) {
			if !slices.Contains(newModel.owners(id, rf), name) {
				probes = append(probes, probe{id, c.node(name)})
			}
		}
	}
	var mu = make(chan struct{}, 1)
	parallel(16, len(probes), func(i int) {
		p := probes[i]
		cp, body, err := c.localCopy(p.node, p.id)
		mu <- struct{}{}
		defer func() { <-mu }()
		switch {
		case err != nil:
			t.Errorf("internal read of %s on %s: %v", p.id, p.node.name, err)
		case cp.state == "stale" && !bytes.Equal(body, pre[p.id]):
			t.Errorf("stale copy of %s on %s is not byte-identical", p.id, p.node.name)
		case cp.state == "stale":
			stale++
		case cp.state == "owned":
			unmarked++
		}
	})
	return stale, unmarked
}

// Scenario 3: one node leaves gracefully (SIGTERM), then another crashes
// (SIGKILL); five nodes become three, each block keeps RF copies.
func TestLeaveAndCrash(t *testing.T) {
	c := startCluster(t, clusterOpts{nodes: 5})
	pre := preload(t, c, 500)
	before := c.waitStable(t, names(c.active()))
	recv0 := c.received(t)
	w := startWorkload(t, c)
	time.Sleep(2 * time.Second) // the workload runs before the leave

	w.openWindow()
	start := time.Now()
	c.stop(t, c.node("node5"))
	mid := c.waitStable(t, []string{"node1", "node2", "node3", "node4"})
	leaveSecs := time.Since(start).Seconds()
	leaveErrs := w.closeWindow()

	w.openWindow()
	start = time.Now()
	c.kill(t, c.node("node4"))
	after := c.waitStable(t, []string{"node1", "node2", "node3"})
	crashSecs := time.Since(start).Seconds()
	crashErrs := w.closeWindow()
	time.Sleep(2 * time.Second) // writes on the three survivors

	var f figures
	f.lost = checkPreloaded(t, c, pre)
	finishWorkload(t, w, &f)
	rep := c.checkPlacement(t, append(keys(pre), w.ackedIDs()...), c.opts.grace+60*time.Second)
	f.migSecs, f.moved, f.changeErrs = leaveSecs+crashSecs, c.movedSince(t, recv0), leaveErrs+crashErrs
	f.extra = fmt.Sprintf("; graceful leave %.1fs (epoch %d -> %d, %d client errors), crash recovery %.1fs (epoch -> %d, %d client errors); RF=%d restored for %d ids (%d with diverged owner versions)",
		leaveSecs, before.Epoch, mid.Epoch, leaveErrs, crashSecs, after.Epoch, crashErrs, rf, rep.ids, rep.diverged)
	f.log(t, "leave+crash")
}

// Scenario 4: two nodes start back to back while the first join's round
// runs (a rate limit keeps it open): the second join is deferred and
// covered by exactly one more round.
func TestJoinsDuringMigration(t *testing.T) {
	c := startCluster(t, clusterOpts{nodes: 3, env: map[string]string{"MigrationRateLimit": "262144"}})
	pre := preload(t, c, 600)
	before := c.waitStable(t, names(c.active()))
	recv0 := c.received(t)
	w := startWorkload(t, c)

	w.openWindow()
	start := time.Now()
	c.startNodes(t, "node4")
	var first clusterStatus
	if err := poll(context.Background(), 60*time.Second, func() error {
		st, err := c.status(c.node("node1"))
		if err != nil {
			return err
		}
		if !st.Migrating || !slices.Contains(st.Target, "node4") {
			return fmt.Errorf("no round towards node4 yet (migrating %v, target %v)", st.Migrating, st.Target)
		}
		first = st
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	c.startNodes(t, "node5")
	var pendingSeen bool
	if err := poll(context.Background(), 60*time.Second, func() error {
		for _, n := range c.active() {
			st, err := c.status(n)
			if err != nil {
				return err
			}
			if st.Pending && st.Round == first.Round {
				pendingSeen = true
				return nil
			}
			if n.name == "node1" && st.Round != first.Round {
				return errStop(fmt.Errorf("the first round (%s) ended before node5's join was seen as pending (now round %q, pending %v)", first.Round, st.Round, st.Pending))
			}
		}
		return fmt.Errorf("pending flag not set yet")
	}); err != nil {
		t.Fatal(err)
	}
	after := c.waitStable(t, []string{"node1", "node2", "node3", "node4", "node5"})
	secs := time.Since(start).Seconds()
	changeErrs := w.closeWindow()
	if slices.Contains(first.Target, "node5") {
		t.Errorf("the first round's target %v already had node5", first.Target)
	}
	if rounds := after.Epoch - before.Epoch; rounds != 2 {
		t.Errorf("%d committed rounds for two joins, the second deferred; want 2 (the first plus one extra)", rounds)
	}
	time.Sleep(time.Second) // writes through all five nodes

	var f figures
	f.lost = checkPreloaded(t, c, pre)
	finishWorkload(t, w, &f)
	rep := c.checkPlacement(t, append(keys(pre), w.ackedIDs()...), c.opts.grace+60*time.Second)
	f.migSecs, f.moved, f.changeErrs = secs, c.movedSince(t, recv0), changeErrs
	f.extra = fmt.Sprintf("; epoch %d -> %d (%d rounds: first target %v, node5 deferred with pending=%v); placement exact on 5 nodes for %d ids (%d with diverged owner versions)",
		before.Epoch, after.Epoch, after.Epoch-before.Epoch, first.Target, pendingSeen, rep.ids, rep.diverged)
	f.log(t, "joins-during-migration")
}

// Scenario 5: a node is cut off the network for 20 s under writes; the
// cluster drops it when its session expires, takes it back when it
// returns, and it ends up serving the newest versions.
func TestPartitionedNode(t *testing.T) {
	c := startCluster(t, clusterOpts{nodes: 3})
	pre := preload(t, c, 400)
	before := c.waitStable(t, names(c.active()))
	recv0 := c.received(t)
	w := startWorkload(t, c)
	time.Sleep(2 * time.Second) // the workload runs before the partition

	n3 := c.node("node3")
	w.openWindow()
	start := time.Now()
	c.disconnect(t, n3)
	dropped := c.waitStable(t, []string{"node1", "node2"})
	droppedAfter := time.Since(start).Seconds()
	time.Sleep(time.Until(start.Add(20 * time.Second))) // the partition lasts 20 s, writes continue
	back := time.Now()
	c.reconnect(t, n3)
	after := c.waitStable(t, []string{"node1", "node2", "node3"})
	rejoinSecs := time.Since(back).Seconds() // from the reconnect to a settled ring of three
	changeErrs := w.closeWindow()
	time.Sleep(time.Second) // writes through node3 again

	var f figures
	f.lost = checkPreloaded(t, c, pre)
	finishWorkload(t, w, &f)
	rep := c.checkPlacement(t, append(keys(pre), w.ackedIDs()...), c.opts.grace+60*time.Second)
	behind := caughtUp(t, c, n3, w, pre)
	f.migSecs, f.moved, f.changeErrs = droppedAfter+rejoinSecs, c.movedSince(t, recv0), changeErrs
	f.extra = fmt.Sprintf("; dropped from the ring %.1fs after the cut (epoch %d -> %d), back in %.1fs after reconnecting (epoch -> %d); node3 holds the newest version of every block (%d behind); placement exact for %d ids (%d with diverged owner versions)",
		droppedAfter, before.Epoch, dropped.Epoch, rejoinSecs, after.Epoch, behind, rep.ids, rep.diverged)
	f.log(t, "partition")
}

// caughtUp checks n's own copies (per /internal/block) of every workload
// and preloaded id against the history: each must be the latest
// acknowledged content or a later attempt. It fails the test and returns
// the count of ids behind.
func caughtUp(t *testing.T, c *cluster, n *node, w *workload, pre map[string][]byte) int {
	t.Helper()
	ids := append(keys(pre), w.ackedIDs()...)
	var behind []string
	err := poll(context.Background(), 30*time.Second, func() error {
		behind = behind[:0]
		ch := make(chan string, len(ids))
		parallel(16, len(ids), func(i int) {
			id := ids[i]
			cp, body, err := c.localCopy(n, id)
			var problem string
			switch {
			case err != nil:
				problem = err.Error()
			case cp.state != "owned":
				problem = fmt.Sprintf("state %q", cp.state)
			case pre[id] != nil && !bytes.Equal(body, pre[id]):
				problem = "content differs"
			case pre[id] == nil:
				w.mu.Lock()
				floor := w.ids[id].acked
				w.mu.Unlock()
				problem = w.judge(id, floor, http.StatusOK, body)
			}
			if problem != "" {
				ch <- id + ": " + problem
			}
		})
		close(ch)
		for s := range ch {
			behind = append(behind, s)
		}
		if len(behind) > 0 {
			return fmt.Errorf("%s: %d of %d blocks behind, e.g. %v", n.name, len(behind), len(ids), behind[:min(3, len(behind))])
		}
		return nil
	})
	if err != nil {
		t.Errorf("not caught up: %v", err)
	}
	return len(behind)
}

// Scenario 6: a node crashes and restarts from its own data directory
// (the same container: SIGKILL, then start) before ZooKeeper notices: no
// migration, its data is still there, and it catches up.
func TestRestartWithVolume(t *testing.T) {
	c := startCluster(t, clusterOpts{nodes: 3})
	pre := preload(t, c, 400)
	before := c.waitStable(t, names(c.active()))
	recv0 := c.received(t)
	w := startWorkload(t, c)
	time.Sleep(2 * time.Second) // the workload runs before the restart

	n3 := c.node("node3")
	w.openWindow()
	start := time.Now()
	c.kill(t, n3)
	// While node3 is down, fresh blocks go to the two others only (a
	// quorum of three owners): node3 must catch up on them.
	missed := map[string][]byte{}
	for i := range 50 {
		id, data := fmt.Sprintf("down-%d", i), randomBlock()
		if _, err := c.put(c.node("node1"), id, data); err != nil {
			t.Fatalf("PUT %s with node3 down: %v", id, err)
		}
		missed[id] = data
	}
	c.start(t, n3)
	downSecs := time.Since(start).Seconds()

	// Data kept: every preloaded block is in node3's own store, intact,
	// before anything could have sent it again.
	kept := 0
	for id, data := range pre {
		cp, body, err := c.localCopy(n3, id)
		if err == nil && cp.state != "" && bytes.Equal(body, data) {
			kept++
		}
	}
	if kept != len(pre) {
		t.Errorf("after the restart node3 holds %d of %d preloaded blocks", kept, len(pre))
	}
	after := c.waitStable(t, []string{"node1", "node2", "node3"})
	changeErrs := w.closeWindow()
	// Before any read touches them, node3 must get the blocks written
	// while it was down: the coordinator kept them as hints and delivers
	// them once node3 answers (hint passes run every second).
	unaided := 0
	if err := poll(context.Background(), 15*time.Second, func() error {
		unaided = 0
		for id, data := range missed {
			if cp, body, err := c.localCopy(n3, id); err == nil && cp.state == "owned" && bytes.Equal(body, data) {
				unaided++
			}
		}
		if unaided < len(missed) {
			return fmt.Errorf("node3 holds %d of %d", unaided, len(missed))
		}
		return nil
	}); err != nil {
		t.Errorf("hinted handoff: %v blocks written while node3 was down, before any read", err)
	}

	var f figures
	f.lost = checkPreloaded(t, c, pre) + checkPreloaded(t, c, missed)
	finishWorkload(t, w, &f)
	// Caught up: after the reads above (through node3 too, which repair
	// what it lacks), node3's own copies are the newest.
	for id, data := range missed {
		pre[id] = data
	}
	behind := caughtUp(t, c, n3, w, pre)
	rep := c.checkPlacement(t, append(keys(pre), w.ackedIDs()...), c.opts.grace+60*time.Second)
	f.migSecs, f.moved, f.changeErrs = 0, c.movedSince(t, recv0), changeErrs
	f.extra = fmt.Sprintf("; node3 down and back healthy in %.1fs, epoch %d -> %d (no round); data kept %d/%d preloaded blocks; of %d blocks written while it was down node3 held %d after its return without a read (hinted handoff), and was %d blocks behind after the verification reads; placement exact for %d ids (%d with diverged owner versions)",
		downSecs, before.Epoch, after.Epoch, kept, len(pre)-len(missed), len(missed), unaided, behind, rep.ids, rep.diverged)
	f.log(t, "restart")
}
