package app

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	gozk "github.com/go-zookeeper/zk"
	"github.com/rs/zerolog"

	"github.com/goblocks/goblocks/internal/testkit"
	"github.com/goblocks/goblocks/node/config"
	"github.com/goblocks/goblocks/node/hlc"
	"github.com/goblocks/goblocks/node/membership"
	"github.com/goblocks/goblocks/node/storage"
	"github.com/goblocks/goblocks/node/wire"
)

// The tests in this file play an attacker and an unlucky operator against
// a running cluster (issue: trust). Each counts acknowledged writes and
// checks none is lost or changed.

// acked is every block a test wrote and had acknowledged.
type acked map[string][]byte

func (c *testCluster) writeAcked(t *testing.T, via []int, prefix string, n int, into acked) {
	t.Helper()
	for k := range n {
		id := fmt.Sprintf("%s-%d", prefix, k)
		data := randomBlock(t)
		if _, err := c.put(via[k%len(via)], id, data); err != nil {
			t.Fatalf("write %s: %v", id, err)
		}
		into[id] = data
	}
}

// verifyAcked reads every acknowledged block through node i (quorum) and
// returns how many are lost or changed.
func (c *testCluster) verifyAcked(t *testing.T, i int, blocks acked) (lost int) {
	t.Helper()
	for id, want := range blocks {
		got, _, err := c.get(i, id)
		if err != nil || string(got) != string(want) {
			lost++
			t.Errorf("block %s: %v (changed: %v)", id, err, err == nil)
		}
	}
	t.Logf("%d acknowledged blocks, %d lost or changed", len(blocks), lost)
	return lost
}

// health returns node i's /health status code and body.
func (c *testCluster) health(i int) (int, healthJSON) {
	status, body, _, err := c.do(http.MethodGet, c.url(i, "/health"), nil)
	var h healthJSON
	if err == nil {
		_ = json.Unmarshal(body, &h)
	}
	return status, h
}

type healthJSON struct {
	Status     string `json:"status"`
	Error      string `json:"error"`
	Conditions []struct {
		Code, Message string
		Unavailable   bool
	} `json:"conditions"`
}

func (h healthJSON) has(code string) bool {
	for _, c := range h.Conditions {
		if c.Code == code {
			return true
		}
	}
	return false
}

// A node whose disk fills refuses replica writes with 507 instead of
// crashing, keeps serving reads, says why in /health (503), and takes
// writes again once space returns, catching up through hints. Its data
// directory is a small tmpfs filled by a ballast file.
func TestDiskFullDegradesAndRecovers(t *testing.T) {
	dir := mountTmpfs(t, "192m")
	const floor = 64 << 20
	c := startCluster(t, 3, clusterOpts{configure: func(i int, cfg *config.Config) {
		cfg.MinFreeBytes = floor
		if i == 2 {
			cfg.DataDir = filepath.Join(dir, "n2")
		}
	}})
	blocks := acked{}
	c.writeAcked(t, []int{0, 1, 2}, "before", 30, blocks)

	// Fill the disk to half the floor.
	free, err := freeBytes(dir)
	if err != nil {
		t.Fatal(err)
	}
	ballast := filepath.Join(dir, "ballast")
	if err := writeBallast(ballast, int64(free)-floor/2); err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, 10*time.Second, func() error {
		if status, h := c.health(2); status != 503 || !h.has("disk_full") {
			return fmt.Errorf("health %d %+v, want 503 disk_full", status, h)
		}
		return nil
	})
	c.writeAcked(t, []int{0, 1}, "full", 60, blocks)
	direct := randomBlock(t)
	status, body, _, err := c.do(http.MethodPut, c.url(2, "/internal/block/direct"), direct, validHdrFor(t, direct)...)
	if err != nil || status != http.StatusInsufficientStorage || !strings.Contains(string(body), "insufficient_storage") {
		t.Fatalf("replica write to the full node: %d %s %v, want 507 insufficient_storage", status, body, err)
	}
	if lost := c.verifyAcked(t, 2, blocks); lost != 0 {
		t.Fatalf("reads through the full node lost %d blocks", lost)
	}

	if err := os.Remove(ballast); err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, 10*time.Second, func() error {
		if status, h := c.health(2); status != 200 {
			return fmt.Errorf("health %d %+v, want 200 once space returned", status, h)
		}
		return nil
	})
	// Hints bring the writes it refused.
	testkit.Eventually(t, 20*time.Second, func() error {
		missing := 0
		for id := range blocks {
			if _, err := c.nodes[2].Engine().GetMeta(id); err != nil {
				missing++
			}
		}
		if missing > 0 {
			return fmt.Errorf("n2 still misses %d of %d blocks", missing, len(blocks))
		}
		return nil
	})
	c.writeAcked(t, []int{2}, "after", 10, blocks)
	if lost := c.verifyAcked(t, 0, blocks); lost != 0 {
		t.Fatalf("%d acknowledged blocks lost", lost)
	}
}

// A node whose disk is completely full cannot open its store for writing
// (replaying the WAL writes a table): it starts read-only instead of
// crash-looping, serves reads, and stops by itself once space returns so
// that its next start takes writes again.
func TestFullDiskAtStartServesReads(t *testing.T) {
	dir := mountTmpfs(t, "96m")
	c := startCluster(t, 3, clusterOpts{configure: func(i int, cfg *config.Config) {
		cfg.MinFreeBytes = 1 << 20
		if i == 2 {
			cfg.DataDir = filepath.Join(dir, "n2")
		}
	}})
	blocks := acked{}
	c.writeAcked(t, []int{0, 1, 2}, "blk", 30, blocks)
	c.stop(2)
	ballast := filepath.Join(dir, "ballast")
	if err := writeBallast(ballast, 1<<40); err == nil || !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("filling the disk: %v, want ENOSPC", err)
	}
	ln, err := net.Listen("tcp", c.cfgs[2].ReplicaAddress)
	if err != nil {
		t.Fatal(err)
	}
	n, err := New(c.cfgs[2], ln, testLogger(t))
	if err != nil {
		t.Fatalf("start on a full disk: %v, want a read-only start", err)
	}
	stopped := make(chan error, 1)
	go func() { stopped <- n.Run(context.Background()) }()
	if status, h := c.health(2); status != 503 || !h.has("read_only") {
		t.Fatalf("health %d %+v, want 503 read_only", status, h)
	}
	if lost := c.verifyAcked(t, 2, blocks); lost != 0 {
		t.Fatalf("reads through the read-only node lost %d blocks", lost)
	}
	c.writeAcked(t, []int{0, 1, 2}, "during", 10, blocks) // the others take them
	if err := os.Remove(ballast); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-stopped:
		if err == nil || !strings.Contains(err.Error(), "space is back") {
			t.Fatalf("read-only node stopped with %v", err)
		}
	case <-time.After(10 * time.Second):
		n.Kill()
		<-stopped
		t.Fatal("the read-only node did not stop once space returned")
	}
	c.start(t, 2, nil)
	if status, h := c.health(2); status != 200 {
		t.Fatalf("health after the restart %d %+v", status, h)
	}
	c.writeAcked(t, []int{2}, "after", 10, blocks)
	if lost := c.verifyAcked(t, 0, blocks); lost != 0 {
		t.Fatalf("%d acknowledged blocks lost", lost)
	}
}

func mountTmpfs(t *testing.T, size string) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "small")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, "size="+size); err != nil {
		t.Skipf("cannot mount a tmpfs here (%v): make test runs as root", err)
	}
	t.Cleanup(func() { _ = syscall.Unmount(dir, syscall.MNT_DETACH) })
	return dir
}

func freeBytes(dir string) (uint64, error) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return 0, err
	}
	return st.Bavail * uint64(st.Bsize), nil
}

func writeBallast(path string, size int64) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	buf := make([]byte, 1<<20)
	for ; size > 0; size -= int64(len(buf)) {
		if _, err := f.Write(buf[:min(int64(len(buf)), size)]); err != nil {
			return err
		}
	}
	return f.Sync()
}

// validHdrFor is the headers of a replica write of data at a current
// version, with the test clusters' token.
func validHdrFor(t *testing.T, data []byte) []string {
	h := http.Header{}
	wire.SetRecordHeaders(h, storage.NewRecord(data, hlc.Version{Timestamp: hlc.At(time.Now()), Node: "n9"}).Meta())
	return []string{wire.HeaderVersion, h.Get(wire.HeaderVersion), wire.HeaderChecksum, h.Get(wire.HeaderChecksum),
		"Authorization", "Bearer " + testClusterToken}
}

// A flipped byte in a table: the damaged copies read as corrupt (not as
// an internal error), so quorum reads repair them from the replicas, and
// /health says the store is damaged.
func TestCorruptTableRepairedByReads(t *testing.T) {
	c := startCluster(t, 3, clusterOpts{noHints: true})
	blocks := c.writeThenCorruptTables(t, 1)
	c.start(t, 1, nil)
	damaged := 0
	for id := range blocks {
		if _, err := c.nodes[1].Engine().Get(id); errors.Is(err, storage.ErrCorrupt) {
			damaged++
		}
	}
	if damaged == 0 {
		t.Fatal("the flipped byte damaged no block: the test proves nothing")
	}
	t.Logf("%d local copies damaged", damaged)
	c.checkDigestsFindDamage(t, 1, blocks)
	if lost := c.verifyAcked(t, 1, blocks); lost != 0 {
		t.Fatalf("%d acknowledged blocks lost", lost)
	}
	unreadable := 0
	for id := range blocks {
		if _, err := c.nodes[1].Engine().Get(id); err != nil {
			unreadable++
		}
	}
	if unreadable > 0 {
		t.Fatalf("%d local copies still unreadable after every block was read through the node", unreadable)
	}
	if _, h := c.health(1); !h.has("corrupt_store") {
		t.Fatalf("health %+v does not report the damaged store", h)
	}
}

// checkDigestsFindDamage asks node i for the digests of blocks, as
// coordinators' quorum reads do: a copy whose payload fails its checksum
// answers corrupt (so the read repairs it without moving the payload),
// every other copy its version.
func (c *testCluster) checkDigestsFindDamage(t *testing.T, i int, blocks acked) {
	t.Helper()
	var ids []string
	for id := range blocks {
		ids = append(ids, id)
	}
	var replies []byte
	for start := 0; start < len(ids); start += wire.MaxBatch {
		batch := ids[start:min(start+wire.MaxBatch, len(ids))]
		code, body, _, err := c.do(http.MethodPost, c.url(i, wire.PathBatchDigest), []byte(strings.Join(batch, "\n")), c.tokenHeader(i)...)
		if err != nil || code != http.StatusOK {
			t.Fatalf("digest batch: %d %s %v", code, body, err)
		}
		replies = append(replies, body...)
	}
	r := bufio.NewReader(bytes.NewReader(replies))
	corrupt := 0
	for _, id := range ids {
		status, err := r.ReadByte()
		if err != nil {
			t.Fatalf("digest replies cut short at %s: %v", id, err)
		}
		_, local := c.nodes[i].Engine().Get(id)
		switch {
		case status == wire.FetchCorrupt:
			corrupt++
			if !errors.Is(local, storage.ErrCorrupt) {
				t.Errorf("%s: digest says corrupt, the engine says %v", id, local)
			}
		case status == wire.FetchFound:
			if _, err := wire.ReadMeta(r); err != nil {
				t.Fatal(err)
			}
			if local != nil {
				t.Errorf("%s: digest found, the engine says %v", id, local)
			}
		default:
			t.Errorf("%s: digest status %q", id, status)
		}
	}
	if corrupt == 0 {
		t.Error("no digest reported a damaged copy")
	}
}

// Damage found while running halts the store's compactions for good, so
// with RebuildCorruptStore the node marks the store and stops; started
// again (by its supervisor), it rebuilds the store from the replicas.
func TestDamagedStoreRebuiltAfterRestart(t *testing.T) {
	c := startCluster(t, 3, clusterOpts{noHints: true})
	blocks := c.writeThenCorruptTables(t, 1)
	c.cfgs[1].RebuildCorruptStore = true
	ln, err := net.Listen("tcp", c.cfgs[1].ReplicaAddress)
	if err != nil {
		t.Fatal(err)
	}
	n, err := New(c.cfgs[1], ln, testLogger(t))
	if err != nil {
		t.Fatalf("a store with a damaged table block still opens: %v", err)
	}
	stopped := make(chan error, 1)
	go func() { stopped <- n.Run(context.Background()) }()
	for id := range blocks {
		_, _ = n.Engine().Get(id) // finds the damage
	}
	select {
	case err := <-stopped:
		if !errors.Is(err, storage.ErrCorrupt) {
			t.Fatalf("node stopped with %v, want the damage", err)
		}
	case <-time.After(10 * time.Second):
		n.Kill()
		<-stopped
		t.Fatal("the node kept running on a damaged store with RebuildCorruptStore")
	}
	c.start(t, 1, nil)
	testkit.Eventually(t, 60*time.Second, func() error {
		if status, h := c.health(1); status != 200 || h.Status == "rebuilding" {
			return fmt.Errorf("health %d %+v", status, h)
		}
		if got := c.nodes[1].Engine().Count(); got < int64(len(blocks)) {
			return fmt.Errorf("n1 holds %d of %d blocks", got, len(blocks))
		}
		return nil
	})
	if entries, _ := filepath.Glob(c.cfgs[1].DataDir + ".corrupt-*"); len(entries) != 1 {
		t.Fatalf("moved-aside stores %v, want one", entries)
	}
	if lost := c.verifyAcked(t, 1, blocks); lost != 0 {
		t.Fatalf("%d acknowledged blocks lost", lost)
	}
}

// A node whose store cannot be opened (a flipped byte in every table and
// in the WAL: bitrot across its disk) does not stay down: with
// RebuildCorruptStore it moves the store aside, starts empty, reports
// rebuilding, and is refilled from its replicas. Without the setting it
// refuses to start and names it.
func TestCorruptStoreIsRebuilt(t *testing.T) {
	c := startCluster(t, 3, clusterOpts{noHints: true})
	blocks := acked{}
	c.writeAcked(t, []int{0, 1, 2}, "blk", 200, blocks)
	flushTables(t, c, 1)
	c.writeAcked(t, []int{0, 1, 2}, "wal", 100, blocks) // in the WAL only
	for id := range blocks {
		c.waitReplicated(t, id)
	}
	c.stop(1)
	dir := c.cfgs[1].DataDir
	if n := corruptFiles(t, dir, "*.sst", "*.log"); n < 2 {
		t.Fatalf("corrupted %d files, want a table and the WAL", n)
	}
	if _, err := New(c.cfgs[1], nil, testLogger(t)); err == nil || !strings.Contains(err.Error(), "RebuildCorruptStore") {
		t.Fatalf("start on a corrupt store without RebuildCorruptStore: %v, want an error naming the setting", err)
	}
	c.cfgs[1].RebuildCorruptStore = true
	c.start(t, 1, nil)
	if entries, _ := filepath.Glob(dir + ".corrupt-*"); len(entries) != 1 {
		t.Fatalf("moved-aside stores %v, want one", entries)
	}
	testkit.Eventually(t, 60*time.Second, func() error {
		status, h := c.health(1)
		if status != 200 || h.Status == "rebuilding" {
			return fmt.Errorf("health %d %+v", status, h)
		}
		if got := c.nodes[1].Engine().Count(); got < int64(len(blocks)) {
			return fmt.Errorf("n1 holds %d of %d blocks", got, len(blocks))
		}
		return nil
	})
	if lost := c.verifyAcked(t, 1, blocks); lost != 0 {
		t.Fatalf("%d acknowledged blocks lost", lost)
	}
}

// ZooKeeper tampering: a client without the cluster's credentials can
// change nothing; one with them that writes garbage (a buggy tool) or
// flags a node leaving cannot make the cluster forget or move data.
func TestZooKeeperTamperingLosesNothing(t *testing.T) {
	c := zkCluster(t, 3, clusterOpts{})
	blocks := acked{}
	c.writeAcked(t, []int{0, 1, 2}, "zk", 60, blocks)
	root := c.opts.zkRoot

	intruder, _, err := gozk.Connect([]string{c.opts.zk.Addr}, 4*time.Second, gozk.WithLogger(gozk.DefaultLogger))
	if err != nil {
		t.Fatal(err)
	}
	defer intruder.Close()
	if _, err := intruder.Set(root+"/ring", []byte("{}"), -1); !errors.Is(err, gozk.ErrNoAuth) {
		t.Fatalf("ring write without credentials: %v, want ErrNoAuth", err)
	}
	fake, _ := json.Marshal(membership.Member{Name: "evil", Addr: "127.0.0.1:1", VNodes: 20})
	if _, err := intruder.Create(root+"/members/member-evil", fake, gozk.FlagEphemeral, gozk.WorldACL(gozk.PermAll)); !errors.Is(err, gozk.ErrNoAuth) {
		t.Fatalf("fake member without credentials: %v, want ErrNoAuth", err)
	}
	if _, _, err := intruder.Get(root + "/cluster-token"); !errors.Is(err, gozk.ErrNoAuth) {
		t.Fatalf("token read without credentials: %v, want ErrNoAuth", err)
	}

	buggy, _, err := gozk.Connect([]string{c.opts.zk.Addr}, 4*time.Second, gozk.WithLogger(gozk.DefaultLogger))
	if err != nil {
		t.Fatal(err)
	}
	defer buggy.Close()
	if err := buggy.AddAuth("digest", []byte(c.opts.zkAuth)); err != nil {
		t.Fatal(err)
	}
	good, _, err := buggy.Get(root + "/ring")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := buggy.Set(root+"/ring", []byte("garbage"), -1); err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, 10*time.Second, func() error {
		for i := range c.nodes {
			status, h := c.health(i)
			if status != 200 || !h.has("invalid_coordination_data") || !strings.Contains(fmt.Sprint(h.Conditions), root+"/ring") {
				return fmt.Errorf("n%d health %d %+v, want 200 naming the bad ring znode", i, status, h)
			}
		}
		return nil
	})
	c.writeAcked(t, []int{0, 1, 2}, "badring", 30, blocks)
	members, _, err := buggy.Children(root + "/members")
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range members {
		data, _, err := buggy.Get(root + "/members/" + m)
		if err != nil {
			t.Fatal(err)
		}
		var mm membership.Member
		_ = json.Unmarshal(data, &mm)
		mm.Leaving = true
		flagged, _ := json.Marshal(mm)
		if _, err := buggy.Set(root+"/members/"+m, flagged, -1); err != nil {
			t.Fatal(err)
		}
	}
	testkit.Eventually(t, 10*time.Second, func() error {
		for _, m := range members {
			data, _, err := buggy.Get(root + "/members/" + m)
			var mm membership.Member
			if err != nil || json.Unmarshal(data, &mm) != nil || mm.Leaving {
				return fmt.Errorf("member %s still %s (%v)", m, data, err)
			}
		}
		return nil
	})
	if _, err := buggy.Set(root+"/ring", good, -1); err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, 10*time.Second, func() error {
		for i := range c.nodes {
			if status, h := c.health(i); status != 200 || len(h.Conditions) != 0 {
				return fmt.Errorf("n%d health %d %+v after the ring was restored", i, status, h)
			}
		}
		return nil
	})
	c.checkPlacement(t, keys(blocks))
	if lost := c.verifyAcked(t, 0, blocks); lost != 0 {
		t.Fatalf("%d acknowledged blocks lost", lost)
	}
}

// Internal requests without the shared token are refused, also when the
// token was generated and shared through ZooKeeper: one forged batch once
// replaced a block on every replica for good.
func TestForgedInternalRequestsRefused(t *testing.T) {
	c := zkCluster(t, 3, clusterOpts{})
	blocks := acked{}
	c.writeAcked(t, []int{0}, "keep", 5, blocks)
	if c.nodes[0].clusterTok.Value() == "" || c.nodes[0].clusterTok.Value() != c.nodes[2].clusterTok.Value() {
		t.Fatal("the nodes do not share one generated token")
	}
	forged := frames(t, "keep-0", randomBlock(t))
	for _, hdr := range [][]string{nil, {"Authorization", "Bearer " + testClusterToken}, {"Authorization", "Bearer "}} {
		for i := range c.nodes {
			status, body, _, err := c.do(http.MethodPost, c.url(i, "/internal/batch/apply"), forged, hdr...)
			if err != nil || status != 401 {
				t.Fatalf("forged batch to n%d with %q: %d %s %v, want 401", i, hdr, status, body, err)
			}
			status, _, _, _ = c.do(http.MethodPost, c.url(i, "/internal/antientropy/ids"), []byte("{}"), hdr...)
			if status != 401 {
				t.Fatalf("id listing on n%d with %q: %d, want 401", i, hdr, status)
			}
		}
	}
	if lost := c.verifyAcked(t, 1, blocks); lost != 0 {
		t.Fatalf("%d blocks changed by forged requests", lost)
	}
}

// A flood of idle keep-alive connections (20,000 once made a node
// unreachable for 90 s) does not lock clients out.
func TestConnectionFloodKeepsNodeReachable(t *testing.T) {
	const max = 64
	c := startCluster(t, 3, clusterOpts{storage: "memory", configure: func(_ int, cfg *config.Config) { cfg.MaxConnections = max }})
	for range 10 * max {
		conn, err := net.Dial("tcp", c.cfgs[0].ReplicaAddress)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		fmt.Fprintf(conn, "GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
	}
	blocks := acked{}
	c.writeAcked(t, []int{0}, "flood", 20, blocks)
	if lost := c.verifyAcked(t, 0, blocks); lost != 0 {
		t.Fatalf("%d blocks lost", lost)
	}
	if got := gatheredValue(t, c.nodes[0].Registry(), "blocks_connections_open"); got > max {
		t.Fatalf("%v connections open, cap %d", got, max)
	}
}

// writeThenCorruptTables writes 200 blocks to every replica, stops node i
// and flips a byte in each of its tables. It returns the blocks written.
func (c *testCluster) writeThenCorruptTables(t *testing.T, i int) acked {
	t.Helper()
	blocks := acked{}
	c.writeAcked(t, []int{0, 1, 2}, "blk", 200, blocks)
	for id := range blocks {
		c.waitReplicated(t, id)
	}
	flushTables(t, c, i)
	c.stop(i)
	if n := corruptFiles(t, c.cfgs[i].DataDir, "*.sst"); n == 0 {
		t.Fatal("no table to corrupt")
	}
	return blocks
}

// flushTables writes node i's memtable to tables, so corruption can hit
// tables as well as the WAL.
func flushTables(t *testing.T, c *testCluster, i int) {
	t.Helper()
	f, ok := unwrapEngine(c.nodes[i].engine).(interface{ Flush() error })
	if !ok {
		t.Fatalf("n%d's engine cannot flush", i)
	}
	if err := f.Flush(); err != nil {
		t.Fatal(err)
	}
}

// corruptFiles flips one byte in the middle of every file of a stopped
// node's store matching the patterns, and returns how many it changed.
func corruptFiles(t *testing.T, dir string, patterns ...string) int {
	t.Helper()
	n := 0
	for _, pattern := range patterns {
		files, _ := filepath.Glob(filepath.Join(dir, pattern))
		for _, f := range files {
			b, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			if len(b) < 4096 {
				continue
			}
			b[len(b)/2] ^= 0x5a
			if err := os.WriteFile(f, b, 0o644); err != nil {
				t.Fatal(err)
			}
			n++
		}
	}
	return n
}

func testLogger(t *testing.T) zerolog.Logger {
	return zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.WarnLevel)
}
