//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	dockernetwork "github.com/moby/moby/api/types/network"
	"github.com/moby/moby/client"
	"github.com/testcontainers/testcontainers-go"
	"github.com/testcontainers/testcontainers-go/network"
	"github.com/testcontainers/testcontainers-go/wait"

	goblocks "github.com/goblocks/goblocks/client"
)

const (
	rf          = 3
	nodePort    = "3000/tcp"
	leaveBudget = 60 * time.Second // LeaveTimeout of every node
)

// clusterOpts shape one scenario's cluster.
type clusterOpts struct {
	nodes int           // started by startCluster
	grace time.Duration // StaleGracePeriod
	// env adds or overrides node settings (e.g. MigrationRateLimit).
	env map[string]string
}

// cluster is ZooKeeper plus goblocks nodes on a network of their own. It
// belongs to one test, which removes it (and writes its logs if it failed)
// in t.Cleanup.
type cluster struct {
	t    *testing.T
	opts clusterOpts
	nw   *testcontainers.DockerNetwork
	zk   *testcontainers.DockerContainer
	http *http.Client
	// token is the nodes' ClusterToken, which the test's reads of
	// /internal/* carry.
	token string

	mu    sync.Mutex
	nodes []*node // in start order
}

// node is one goblocks container. Its name is its ReplicaName, network
// alias and ReplicaAddress, stable across restarts.
type node struct {
	name string
	ctr  *testcontainers.DockerContainer
	url  atomic.Pointer[string] // http://host:port; changes after restart or reconnect
	// active: the process runs and the test can reach it (not stopped,
	// killed or cut off the network).
	active atomic.Bool
}

func (n *node) base() string { return *n.url.Load() }

func startCluster(t *testing.T, o clusterOpts) *cluster {
	t.Helper()
	if o.grace == 0 {
		o.grace = 8 * time.Second
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	c := &cluster{t: t, opts: o, token: rand.Text(), http: &http.Client{
		Transport: &http.Transport{MaxIdleConnsPerHost: 32, MaxIdleConns: 256},
		Timeout:   10 * time.Second, // above the nodes' RequestTimeout (5s)
	}}
	nw, err := network.New(ctx, network.WithLabels(suiteLabels()))
	if err != nil {
		t.Fatalf("create network: %v", err)
	}
	resources.addNetwork(nw)
	c.nw = nw
	t.Cleanup(c.close)

	zk, err := testcontainers.Run(ctx, zookeeperImage,
		network.WithNetwork([]string{"zk"}, nw),
		testcontainers.WithName(c.containerName("zk")),
		testcontainers.WithLabels(suiteLabels()),
		testcontainers.WithExposedPorts("2181/tcp"),
		// Nodes retry until ZooKeeper answers; this only keeps a broken
		// image from surfacing as a node timeout.
		testcontainers.WithWaitStrategy(wait.ForLog("binding to port").WithStartupTimeout(90*time.Second)),
	)
	if zk != nil {
		resources.addContainer(zk)
		c.zk = zk
	}
	if err != nil {
		t.Fatalf("start ZooKeeper (%s): %v", zookeeperImage, err)
	}
	names := make([]string, o.nodes)
	for i := range names {
		names[i] = fmt.Sprintf("node%d", i+1)
	}
	c.startNodes(t, names...)
	c.waitStable(t, names)
	return c
}

// containerName is unique per run, scenario and node, so `docker ps`
// tells them apart while the suite runs.
func (c *cluster) containerName(role string) string {
	s := strings.ToLower(strings.NewReplacer("/", "-", "_", "-").Replace(c.t.Name()))
	return fmt.Sprintf("gbe2e-%d-%s-%s", os.Getpid(), s, role)
}

func (c *cluster) nodeEnv(name string) map[string]string {
	env := map[string]string{
		"ZKAddress":         "zk:2181",
		"ReplicaName":       name,
		"ReplicaAddress":    name,
		"ReplicationFactor": fmt.Sprint(rf),
		"StaleGracePeriod":  c.opts.grace.String(),
		"GCInterval":        "1s",
		"ZKSessionTimeout":  "4s",
		"LeaveTimeout":      leaveBudget.String(),
		"LogLevel":          "info",
		"DataDir":           "/data",
		// Digest ACLs as compose runs. The token is set rather than
		// generated and shared through ZooKeeper (as compose does) so the
		// test can read copies through /internal/*; the in-process
		// ZooKeeper tests cover the generated token.
		"ZKAuth":              "goblocks:e2e-zookeeper-password",
		"ClusterToken":        c.token,
		"RebuildCorruptStore": "true",
	}
	for k, v := range c.opts.env {
		env[k] = v
	}
	return env
}

// startNodes starts the named nodes concurrently and waits until each
// answers /health with 200 (a ZooKeeper session and a committed ring).
func (c *cluster) startNodes(t *testing.T, names ...string) []*node {
	t.Helper()
	out := make([]*node, len(names))
	errs := make([]error, len(names))
	var wg sync.WaitGroup
	for i, name := range names {
		wg.Add(1)
		go func() {
			defer wg.Done()
			out[i], errs[i] = c.startNode(name)
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	return out
}

func (c *cluster) startNode(name string) (*node, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	ctr, err := testcontainers.Run(ctx, nodeImage,
		network.WithNetwork([]string{name}, c.nw),
		testcontainers.WithName(c.containerName(name)),
		testcontainers.WithLabels(suiteLabels()),
		testcontainers.WithExposedPorts(nodePort),
		testcontainers.WithEnv(c.nodeEnv(name)),
		testcontainers.WithWaitStrategy(healthy()),
	)
	if ctr != nil {
		resources.addContainer(ctr)
		n := &node{name: name, ctr: ctr}
		n.url.Store(new(string))
		c.mu.Lock()
		c.nodes = append(c.nodes, n)
		c.mu.Unlock()
		if err == nil {
			if err = c.refreshURL(ctx, n); err == nil {
				n.active.Store(true)
				return n, nil
			}
		}
	}
	return nil, fmt.Errorf("start %s (%s): %w", name, nodeImage, err)
}

// healthy waits for 200 on /health: 503 means no session or no ring yet.
func healthy() wait.Strategy {
	return wait.ForHTTP("/health").WithPort(nodePort).
		WithPollInterval(200 * time.Millisecond).WithStartupTimeout(90 * time.Second)
}

// refreshURL reads the node's mapped port again: it changes after a
// restart or a network reconnect.
func (c *cluster) refreshURL(ctx context.Context, n *node) error {
	return poll(ctx, 30*time.Second, func() error {
		ep, err := n.ctr.PortEndpoint(ctx, nodePort, "http")
		if err != nil {
			return err
		}
		n.url.Store(&ep)
		return nil
	})
}

func (c *cluster) node(name string) *node {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, n := range c.nodes {
		if n.name == name {
			return n
		}
	}
	c.t.Fatalf("no node %s", name)
	return nil
}

// active lists the nodes the test can talk to, in start order.
func (c *cluster) active() []*node {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []*node
	for _, n := range c.nodes {
		if n.active.Load() {
			out = append(out, n)
		}
	}
	return out
}

func names(ns []*node) []string {
	out := make([]string, len(ns))
	for i, n := range ns {
		out[i] = n.name
	}
	return out
}

// stop sends SIGTERM (a graceful leave: the node hands its data over
// before it exits) and waits until the container has exited.
func (c *cluster) stop(t *testing.T, n *node) {
	t.Helper()
	n.active.Store(false)
	ctx, cancel := context.WithTimeout(context.Background(), leaveBudget+30*time.Second)
	defer cancel()
	timeout := leaveBudget + 15*time.Second // docker kills after this; the node's own budget is shorter
	if err := n.ctr.Stop(ctx, &timeout); err != nil {
		t.Fatalf("stop %s: %v", n.name, err)
	}
}

// kill sends SIGKILL: a crash, no leave.
func (c *cluster) kill(t *testing.T, n *node) {
	t.Helper()
	n.active.Store(false)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := resources.docker.ContainerKill(ctx, n.ctr.GetContainerID(), client.ContainerKillOptions{Signal: "KILL"}); err != nil {
		t.Fatalf("kill %s: %v", n.name, err)
	}
	if err := poll(ctx, 20*time.Second, func() error {
		st, err := n.ctr.State(ctx)
		if err != nil {
			return err
		}
		if st.Running {
			return fmt.Errorf("%s still running", n.name)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
}

// start starts a stopped or killed container again: same filesystem, so
// the same /data.
func (c *cluster) start(t *testing.T, n *node) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := n.ctr.Start(ctx); err != nil {
		t.Fatalf("start %s again: %v", n.name, err)
	}
	if err := c.refreshURL(ctx, n); err != nil {
		t.Fatalf("%s: mapped port: %v", n.name, err)
	}
	n.active.Store(true)
}

// disconnect cuts the node off the cluster network (it keeps running).
func (c *cluster) disconnect(t *testing.T, n *node) {
	t.Helper()
	n.active.Store(false)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := resources.docker.NetworkDisconnect(ctx, c.nw.ID, client.NetworkDisconnectOptions{Container: n.ctr.GetContainerID(), Force: true}); err != nil {
		t.Fatalf("disconnect %s: %v", n.name, err)
	}
}

// reconnect attaches the node again under its alias (Docker forgets the
// aliases on disconnect) and reads its new mapped port.
func (c *cluster) reconnect(t *testing.T, n *node) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if _, err := resources.docker.NetworkConnect(ctx, c.nw.ID, client.NetworkConnectOptions{
		Container:      n.ctr.GetContainerID(),
		EndpointConfig: &dockernetwork.EndpointSettings{Aliases: []string{n.name}},
	}); err != nil {
		t.Fatalf("reconnect %s: %v", n.name, err)
	}
	if err := c.refreshURL(ctx, n); err != nil {
		t.Fatalf("%s: mapped port: %v", n.name, err)
	}
	if err := poll(ctx, 60*time.Second, func() error {
		if _, err := c.api(n).Health(ctx, ""); err != nil {
			return fmt.Errorf("%s health: %w", n.name, err)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	n.active.Store(true)
}

// close writes every container's log when the test failed, then removes
// the containers and the network.
func (c *cluster) close() {
	c.mu.Lock()
	ctrs := map[string]*testcontainers.DockerContainer{}
	if c.zk != nil {
		ctrs["zk"] = c.zk
	}
	for _, n := range c.nodes {
		ctrs[n.name] = n.ctr
	}
	c.mu.Unlock()
	if c.t.Failed() {
		dir := filepath.Join("logs", strings.NewReplacer("/", "_", " ", "_").Replace(c.t.Name()))
		if err := c.writeLogs(dir, ctrs); err != nil {
			c.t.Logf("writing container logs: %v", err)
		} else {
			abs, _ := filepath.Abs(dir)
			c.t.Logf("container logs in %s", abs)
		}
	}
	for name, ctr := range ctrs {
		if err := resources.removeContainer(ctr); err != nil {
			c.t.Errorf("remove %s: %v", name, err)
		}
	}
	if err := resources.removeNetwork(c.nw); err != nil {
		c.t.Errorf("remove network %s: %v", c.nw.Name, err)
	}
}

func (c *cluster) writeLogs(dir string, ctrs map[string]*testcontainers.DockerContainer) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for name, ctr := range ctrs {
		rc, err := ctr.Logs(ctx)
		if err != nil {
			c.t.Logf("logs of %s: %v", name, err)
			continue
		}
		var buf bytes.Buffer
		_, err = io.Copy(&buf, rc)
		rc.Close()
		if err != nil {
			c.t.Logf("logs of %s: %v", name, err)
		}
		if err := os.WriteFile(filepath.Join(dir, name+".log"), buf.Bytes(), 0o644); err != nil {
			return err
		}
	}
	return nil
}

// api is a client of node n alone: the scenarios judge each node's own
// answers, so the client must not fail over to another node.
func (c *cluster) api(n *node) *goblocks.Client {
	cl, err := goblocks.New([]string{n.base()}, goblocks.WithHTTPClient(c.http), goblocks.WithRetries(0))
	if err != nil {
		panic(err) // base() is always an http://host:port URL
	}
	return cl
}

// put writes id through n and returns the version it got.
func (c *cluster) put(n *node, id string, data []byte) (string, error) {
	return c.api(n).Put(context.Background(), id, data)
}

// get reads id through n as the checks judge a read: 200 and the payload,
// or the error status the node answered (404, 503, ...) and its message;
// a node that could not be reached is status 0 and the error.
func (c *cluster) get(n *node, id string) (int, []byte, error) {
	body, err := c.api(n).Get(context.Background(), id)
	var e *goblocks.Error
	switch {
	case err == nil:
		return http.StatusOK, body, nil
	case errors.As(err, &e) && e.Status != 0:
		return e.Status, []byte(e.Message), nil
	}
	return 0, nil, err
}

// del deletes id through n.
func (c *cluster) del(n *node, id string) error {
	return c.api(n).Delete(context.Background(), id)
}

// do sends one request and reads the whole answer (endpoints package
// client does not cover: /metrics, /internal/*).
func (c *cluster) do(method, url string, body []byte) (int, []byte, http.Header, error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		return 0, nil, nil, err
	}
	if strings.Contains(url, "/internal/") {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return 0, nil, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, b, resp.Header, err
}

// clusterStatus is GET /admin/cluster as package client decodes it.
type clusterStatus = goblocks.NodeStatus

// ringTable is the committed ring n routes by, with its tokens.
func (c *cluster) ringTable(n *node) (*goblocks.RingTable, error) {
	rs, err := c.api(n).Ring(context.Background(), "")
	if err != nil {
		return nil, fmt.Errorf("%s /admin/ring: %w", n.name, err)
	}
	return rs.Ring, nil
}

func (c *cluster) status(n *node) (clusterStatus, error) {
	st, err := c.api(n).ClusterStatus(context.Background(), "")
	if err != nil {
		return clusterStatus{}, fmt.Errorf("%s /admin/cluster: %w", n.name, err)
	}
	return *st, nil
}

// waitStable waits until every active node routes by the same committed
// ring whose members are exactly want, and no round runs or is pending.
func (c *cluster) waitStable(t *testing.T, want []string) clusterStatus {
	t.Helper()
	want = slices.Sorted(slices.Values(want))
	var last clusterStatus
	err := poll(context.Background(), 3*time.Minute, func() error {
		var epoch int64 = -1
		for _, n := range c.active() {
			st, err := c.status(n)
			if err != nil {
				return err
			}
			last = st
			ring := slices.Sorted(slices.Values(st.RingMembers))
			switch {
			case !st.Connected:
				return fmt.Errorf("%s: no ZooKeeper session", n.name)
			case st.Migrating || st.Pending:
				return fmt.Errorf("%s: migrating=%v pending=%v (round %s, target %v)", n.name, st.Migrating, st.Pending, st.Round, st.Target)
			case !slices.Equal(ring, want):
				return fmt.Errorf("%s: ring %v, want %v", n.name, ring, want)
			case st.ViewEpoch != st.Epoch:
				return fmt.Errorf("%s: routes by epoch %d, committed %d", n.name, st.ViewEpoch, st.Epoch)
			case epoch >= 0 && st.Epoch != epoch:
				return fmt.Errorf("%s: epoch %d, others %d", n.name, st.Epoch, epoch)
			}
			epoch = st.Epoch
		}
		return nil
	})
	if err != nil {
		t.Fatalf("cluster not stable on %v: %v", want, err)
	}
	return last
}

// received sums the blocks every active node received by migration
// (cumulative per process).
func (c *cluster) received(t *testing.T) map[string]int64 {
	t.Helper()
	out := map[string]int64{}
	for _, n := range c.active() {
		st, err := c.status(n)
		if err != nil {
			t.Fatal(err)
		}
		out[n.name] = st.Transfer.ReceivedBlocks
	}
	return out
}

// movedSince is how many blocks arrived by migration on the active nodes
// since before (a snapshot of received); a restarted node counts from 0.
func (c *cluster) movedSince(t *testing.T, before map[string]int64) int64 {
	var moved int64
	for name, v := range c.received(t) {
		if v >= before[name] {
			moved += v - before[name]
		} else {
			moved += v
		}
	}
	return moved
}

// lastRoundSeconds is the longest last round (after epoch from) any
// active node reports.
func (c *cluster) lastRoundSeconds(t *testing.T, from int64) float64 {
	var secs float64
	for _, n := range c.active() {
		st, err := c.status(n)
		if err != nil {
			t.Fatal(err)
		}
		if lr := st.LastRound; lr != nil && lr.Epoch > from {
			secs = max(secs, lr.Seconds)
		}
	}
	return secs
}

// copyState is one node's local copy of a block per /internal/block/{id}.
type copyState struct {
	state   string // owned, stale, tombstone; "" when absent
	version string
}

func (c *cluster) localCopy(n *node, id string) (copyState, []byte, error) {
	code, body, hdr, err := c.do(http.MethodGet, n.base()+"/internal/block/"+id, nil)
	switch {
	case err != nil:
		return copyState{}, nil, err
	case code == http.StatusNotFound:
		return copyState{}, nil, nil
	case code != http.StatusOK:
		return copyState{}, nil, fmt.Errorf("%s /internal/block/%s: %d %s", n.name, id, code, body)
	}
	return copyState{state: hdr.Get("X-Goblocks-State"), version: hdr.Get("X-Goblocks-Version")}, body, nil
}

// placementReport says how far the stored copies are from the ring.
type placementReport struct {
	ids       int
	misplaced []string // first few problems
	bad       int      // ids not held exactly by their owners
	stale     int      // stale copies left
	diverged  int      // ids whose owners hold different versions
}

// checkPlacement waits until every id is held (owned, not stale) by
// exactly its RF owners under the committed ring, on every active node,
// and no stale copy is left. Owners come from the suite's own ring model
// of the committed ring /admin/ring describes.
func (c *cluster) checkPlacement(t *testing.T, ids []string, timeout time.Duration) placementReport {
	t.Helper()
	var rep placementReport
	err := poll(context.Background(), timeout, func() error {
		var err error
		rep, err = c.placement(ids)
		if err != nil {
			return err
		}
		if rep.bad > 0 || rep.stale > 0 {
			return fmt.Errorf("%d of %d ids misplaced, %d stale copies left, e.g. %v", rep.bad, rep.ids, rep.stale, rep.misplaced)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("placement: %v", err)
	}
	return rep
}

func (c *cluster) placement(ids []string) (placementReport, error) {
	nodes := c.active()
	table, err := c.ringTable(nodes[0])
	if err != nil {
		return placementReport{}, err
	}
	model, err := newRingModel(table)
	if err != nil {
		return placementReport{}, err
	}
	rep := placementReport{ids: len(ids)}
	var mu sync.Mutex
	var firstErr error
	parallel(16, len(ids), func(i int) {
		id := ids[i]
		owners := model.owners(id, rf)
		var holders []string
		versions := map[string]bool{}
		stale := 0
		for _, n := range nodes {
			cp, _, err := c.localCopy(n, id)
			if err != nil {
				mu.Lock()
				firstErr = cmpErr(firstErr, err)
				mu.Unlock()
				return
			}
			switch cp.state {
			case "owned":
				holders = append(holders, n.name)
				versions[cp.version] = true
			case "stale":
				stale++
			}
		}
		slices.Sort(holders)
		mu.Lock()
		defer mu.Unlock()
		rep.stale += stale
		if !slices.Equal(holders, owners) {
			rep.bad++
			if len(rep.misplaced) < 3 {
				rep.misplaced = append(rep.misplaced, fmt.Sprintf("%s held by %v, owners %v", id, holders, owners))
			}
		}
		if len(versions) > 1 {
			rep.diverged++
		}
	})
	return rep, firstErr
}

func cmpErr(a, b error) error {
	if a != nil {
		return a
	}
	return b
}

// parallel runs f(0..n-1) on up to workers goroutines.
func parallel(workers, n int, f func(i int)) {
	var next atomic.Int64
	var wg sync.WaitGroup
	for range min(workers, n) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				f(i)
			}
		}()
	}
	wg.Wait()
}

// poll calls cond until it returns nil, the timeout passes or ctx ends;
// the error says what was last seen.
func poll(ctx context.Context, timeout time.Duration, cond func() error) error {
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		err := cond()
		if err == nil {
			return nil
		}
		var stop stopError
		if errors.As(err, &stop) {
			return stop.error
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("after %v: %w", timeout, err)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w: last: %w", ctx.Err(), err)
		case <-tick.C:
		}
	}
}

// stopError ends a poll at once: the condition can no longer be met.
type stopError struct{ error }

func errStop(err error) error { return stopError{err} }
