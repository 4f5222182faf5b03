package app

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"go.uber.org/goleak"

	"github.com/goblocks/goblocks/internal/testkit"
	"github.com/goblocks/goblocks/node/config"
	"github.com/goblocks/goblocks/node/membership/zk/zktest"
	"github.com/goblocks/goblocks/node/peertls"
	"github.com/goblocks/goblocks/node/peertls/peertlstest"
)

// testCluster runs N nodes in this process, each with its own HTTP server
// on a loopback port, talking to each other over real HTTP.
type testCluster struct {
	t        *testing.T
	tb       testing.TB
	scheme   string // of the nodes' URLs: http:// or https://
	cfgsMu   sync.RWMutex
	leakBase goleak.Option
	opts     clusterOpts
	dir      string
	peers    string
	cfgs     []config.Config
	nodes    []*Node
	stops    []func()
	client   *http.Client
}

type clusterOpts struct {
	storage string // "pebble" (default) or "memory"
	rf      int
	token   string
	// zk, when set, makes the nodes use ZooKeeper membership instead of a
	// static peer list.
	zk     *zktest.Server
	zkRoot string
	// zkAuth is every node's ZKAuth (zk mode); with no token the nodes
	// then share a generated cluster token through ZooKeeper.
	zkAuth   string
	grace    time.Duration // StaleGracePeriod (zk mode)
	rateBps  int64         // MigrationRateLimit
	logLevel zerolog.Level
	logOut   io.Writer // where logs go at logLevel (default: the test log)
	// tracesURL, when set, exports every node's spans there over OTLP/gRPC.
	tracesURL string
	// noHints turns hinted handoff off (HintWindow 0).
	noHints bool
	// antiEntropy, when set, is every node's AntiEntropyInterval (the
	// default, 10m, never fires in a test).
	antiEntropy time.Duration
	// sessionTimeout, when set, is every node's ZKSessionTimeout (zk mode;
	// default 1.5s).
	sessionTimeout time.Duration
	// readRepair, when set, is every node's ReadRepair.
	readRepair string
	// wrapHandler, when set, wraps node i's HTTP handler (fault injection:
	// stalls, slow replica writes).
	wrapHandler func(i int, h http.Handler) http.Handler
	// tls, when set, issues every node a certificate of this CA and runs
	// the cluster with mutual TLS; the test client trusts the CA.
	tls *peertlstest.CA
	// configure, when set, adjusts node i's configuration last (a data
	// directory on a small filesystem, a connection cap, ...).
	configure func(i int, cfg *config.Config)
}

// testClusterToken is the cluster token of test clusters that set none.
const testClusterToken = "test-cluster-token-0123456789"

func startCluster(t testing.TB, n int, o clusterOpts) *testCluster {
	t.Helper()
	if o.storage == "" {
		o.storage = "pebble"
	}
	if o.rf == 0 {
		o.rf = 3
	}
	// Goroutines running now belong to the test or to earlier clusters'
	// shared fixtures; every goroutine the nodes start must be gone again
	// once they stopped.
	leakBase := goleak.IgnoreCurrent()
	lns := make([]net.Listener, n)
	var peers []string
	for i := range lns {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		lns[i] = ln
		peers = append(peers, fmt.Sprintf("n%d=%s", i, ln.Addr()))
	}
	c := &testCluster{
		tb:       t,
		leakBase: leakBase,
		opts:     o,
		dir:      t.TempDir(),
		cfgs:     make([]config.Config, n),
		nodes:    make([]*Node, n),
		stops:    make([]func(), n),
		client:   &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 256}, Timeout: 10 * time.Second},
	}
	if tt, ok := t.(*testing.T); ok {
		c.t = tt
	}
	c.scheme = "http://"
	if o.tls != nil {
		pool, err := peertls.LoadCA(o.tls.File)
		if err != nil {
			t.Fatal(err)
		}
		c.client.Transport.(*http.Transport).TLSClientConfig = &tls.Config{RootCAs: pool}
		c.scheme = "https://"
	}
	if o.zk == nil {
		c.peers = strings.Join(peers, ",")
	}
	for i := range lns {
		c.cfgs[i] = c.config(t, i, lns[i].Addr().String())
		c.start(t, i, lns[i])
	}
	t.Cleanup(c.stopAll)
	return c
}

func (c *testCluster) config(t testing.TB, i int, addr string) config.Config {
	cfg := config.Default()
	cfg.ReplicaName = fmt.Sprintf("n%d", i)
	cfg.ReplicaAddress = addr
	cfg.Peers = c.peers
	cfg.Storage = c.opts.storage
	cfg.DataDir = filepath.Join(c.dir, cfg.ReplicaName)
	cfg.ReplicationFactor = c.opts.rf
	cfg.ClusterToken = c.opts.token
	if cfg.ClusterToken == "" && (c.opts.zk == nil || c.opts.zkAuth == "") {
		cfg.ClusterToken = testClusterToken
	}
	cfg.RequestTimeout = 3 * time.Second
	if c.opts.tls != nil {
		files := c.opts.tls.Issue(t, cfg.ReplicaName)
		cfg.TLSCert, cfg.TLSKey, cfg.TLSCA = files.Cert, files.Key, files.CA
	}
	cfg.OTLPEndpoint = c.opts.tracesURL
	if c.opts.noHints {
		cfg.HintWindow = 0
	}
	if c.opts.antiEntropy > 0 {
		cfg.AntiEntropyInterval = c.opts.antiEntropy
	}
	if c.opts.readRepair != "" {
		cfg.ReadRepair = c.opts.readRepair
	}
	if c.opts.zk != nil {
		cfg.ZKAddress = c.opts.zk.Addr
		cfg.ZKRoot = c.opts.zkRoot
		cfg.ZKAuth = c.opts.zkAuth
		cfg.ZKSessionTimeout = 1500 * time.Millisecond
		if c.opts.sessionTimeout > 0 {
			cfg.ZKSessionTimeout = c.opts.sessionTimeout
		}
		cfg.StaleGracePeriod = c.opts.grace
		cfg.GCInterval = 200 * time.Millisecond
		cfg.LeaveTimeout = 60 * time.Second
		cfg.MigrationRateLimit = c.opts.rateBps
	}
	if c.opts.configure != nil {
		c.opts.configure(i, &cfg)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	return cfg
}

// addNode starts one more node (zk mode: it joins the cluster).
func (c *testCluster) addNode(t testing.TB) int {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	i := len(c.nodes)
	cfg := c.config(t, i, ln.Addr().String())
	c.cfgsMu.Lock() // workload goroutines read cfgs through url
	c.cfgs = append(c.cfgs, cfg)
	c.cfgsMu.Unlock()
	c.nodes = append(c.nodes, nil)
	c.stops = append(c.stops, nil)
	c.start(t, i, ln)
	return i
}

// kill stops node i as a crash would (no graceful leave).
func (c *testCluster) kill(i int) {
	if c.stops[i] != nil {
		c.nodes[i].Kill()
		c.stops[i]()
		c.stops[i] = nil
	}
}

func (c *testCluster) start(t testing.TB, i int, ln net.Listener) {
	t.Helper()
	if ln == nil {
		var err error
		// The port was ours a moment ago; the kernel lets us bind it again.
		if ln, err = net.Listen("tcp", c.cfgs[i].ReplicaAddress); err != nil {
			t.Fatal(err)
		}
	}
	log := zerolog.Nop()
	if c.opts.logOut != nil {
		log = zerolog.New(c.opts.logOut).Level(c.opts.logLevel)
	} else if c.opts.logLevel != 0 {
		log = zerolog.New(zerolog.NewTestWriter(t)).Level(c.opts.logLevel)
	}
	n, err := New(c.cfgs[i], ln, log)
	if err != nil {
		t.Fatal(err)
	}
	if c.opts.wrapHandler != nil {
		n.server.Handler = c.opts.wrapHandler(i, n.server.Handler)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := n.Run(ctx); err != nil {
			t.Errorf("node %d: %v", i, err)
		}
	}()
	c.nodes[i] = n
	c.stops[i] = func() { cancel(); <-done }
}

func (c *testCluster) stop(i int) {
	if c.stops[i] != nil {
		c.stops[i]()
		c.stops[i] = nil
	}
}

func (c *testCluster) restart(t testing.TB, i int) {
	c.stop(i)
	c.start(t, i, nil)
}

// stopAll ends every node; with ZooKeeper as a crash would (a graceful
// leave of the last nodes could never complete).
func (c *testCluster) stopAll() {
	for i := range c.stops {
		if c.opts.zk != nil {
			c.kill(i)
		}
		c.stop(i)
	}
	c.client.CloseIdleConnections()
	// A ZooKeeper the test restarted is the test's, not the nodes'.
	zkProcess := goleak.IgnoreAnyFunction("github.com/goblocks/goblocks/node/membership/zk/zktest.(*Server).spawn.func1")
	if err := goleak.Find(c.leakBase, zkProcess); err != nil {
		c.tb.Errorf("goroutines left running after every node stopped: %v", err)
	}
}

func (c *testCluster) url(i int, path string) string {
	c.cfgsMu.RLock()
	defer c.cfgsMu.RUnlock()
	return c.scheme + c.cfgs[i].ReplicaAddress + path
}

func (c *testCluster) do(method, url string, body []byte, hdr ...string) (int, []byte, http.Header, error) {
	req, err := http.NewRequest(method, url, bytes.NewReader(body))
	if err != nil {
		return 0, nil, nil, err
	}
	if body == nil {
		req.Body = nil
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := c.client.Do(req)
	if err != nil {
		return 0, nil, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, b, resp.Header, err
}

// tokenHeader is the Authorization header node i's peers send: the
// configured token, or the one it got through ZooKeeper.
func (c *testCluster) tokenHeader(i int) []string {
	return []string{"Authorization", "Bearer " + c.nodes[i].clusterTok.Value()}
}

func (c *testCluster) put(i int, id string, data []byte) (string, error) {
	status, body, hdr, err := c.do(http.MethodPut, c.url(i, "/block/"+id), data)
	if err != nil {
		return "", err
	}
	if status != http.StatusCreated {
		return "", fmt.Errorf("PUT %s via n%d: %d %s", id, i, status, body)
	}
	return hdr.Get("X-Goblocks-Version"), nil
}

var errNotFound = errors.New("not found")

func (c *testCluster) get(i int, id string) ([]byte, string, error) {
	status, body, hdr, err := c.do(http.MethodGet, c.url(i, "/block/"+id), nil)
	if err != nil {
		return nil, "", err
	}
	switch status {
	case http.StatusOK:
		return body, hdr.Get("X-Goblocks-Version"), nil
	case http.StatusNotFound:
		return nil, "", errNotFound
	}
	return nil, "", fmt.Errorf("GET %s via n%d: %d %s", id, i, status, body)
}

func randomBlock(t testing.TB) []byte {
	b := make([]byte, 4096)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

// localVersions returns each running node's stored version of id ("" when
// it holds none), read straight from its engine.
// waitVersion waits until every node holds version v of id (writes are
// acknowledged at quorum; the last replica may apply a moment later).
// waitReplicated waits until every running node holds the version of id
// that a quorum read through node 0 returns (writes are acknowledged by a
// quorum; the last copy may land a moment later).
func (c *testCluster) waitReplicated(t *testing.T, id string) {
	t.Helper()
	_, v, err := c.get(0, id)
	if err != nil {
		t.Fatal(err)
	}
	c.waitVersion(t, id, v)
}

func (c *testCluster) waitVersion(t *testing.T, id, v string) {
	t.Helper()
	testkit.Eventually(t, 5*time.Second, func() error {
		for i, got := range c.localVersions(id) {
			if got != v {
				return fmt.Errorf("n%d holds %q of %s, want %q", i, got, id, v)
			}
		}
		return nil
	})
}

func (c *testCluster) localVersions(id string) []string {
	out := make([]string, len(c.nodes))
	for i, n := range c.nodes {
		if c.stops[i] == nil {
			out[i] = "(stopped)"
			continue
		}
		if m, err := n.Engine().GetMeta(id); err == nil {
			out[i] = m.Version.String()
		}
	}
	return out
}

var _ = sync.Mutex{}
