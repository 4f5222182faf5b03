package app

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"

	"github.com/goblocks/goblocks/internal/testkit"
	"github.com/goblocks/goblocks/node/membership"
	"github.com/goblocks/goblocks/node/membership/zk/zktest"
)

// This file is a Jepsen-style check of single-block operations: concurrent
// clients write unique values to a few hot blocks and read them through
// random nodes while faults are injected; every operation's invocation and
// completion are recorded, and the history of each block is checked with a
// linearizability checker (porcupine). A write that failed or timed out
// may or may not have been applied, so it is recorded as never returning
// (concurrent with everything after it). Reads that failed are dropped.

// linInput is one operation on a register: a write of value, or a read.
type linInput struct {
	key   string
	write bool
	value string // written value; "" is a delete
}

// registerModel is one register per block; absent and deleted read as "".
var registerModel = porcupine.Model{
	Partition: func(history []porcupine.Operation) [][]porcupine.Operation {
		byKey := map[string][]porcupine.Operation{}
		var keys []string
		for _, op := range history {
			k := op.Input.(linInput).key
			if _, ok := byKey[k]; !ok {
				keys = append(keys, k)
			}
			byKey[k] = append(byKey[k], op)
		}
		out := make([][]porcupine.Operation, 0, len(keys))
		for _, k := range keys {
			out = append(out, byKey[k])
		}
		return out
	},
	Init: func() any { return "" },
	Step: func(state, input, output any) (bool, any) {
		in := input.(linInput)
		if in.write {
			return true, in.value
		}
		return output.(string) == state.(string), state
	},
	DescribeOperation: func(input, output any) string {
		in := input.(linInput)
		if in.write {
			return fmt.Sprintf("put(%s, %q)", in.key, in.value)
		}
		return fmt.Sprintf("get(%s) -> %q", in.key, output)
	},
}

// linWorkload drives clients against a cluster and records the history.
type linWorkload struct {
	c       *testCluster
	keys    []string
	query   string // appended to every request (e.g. "?consistency=one")
	start   time.Time
	client  *http.Client
	mu      sync.Mutex
	history []porcupine.Operation
	// live lists the nodes clients may pick; faults take nodes out.
	liveMu sync.Mutex
	live   []int
	// counters for the report
	acked, indeterminate, reads, failedReads, deletes atomic.Int64
	refused                                           atomic.Int64 // 503 answers
	// noSession counts the 503s a node gave because it could not vouch
	// for its ZooKeeper session (others are quorum timeouts, which CPU
	// contention on a shared machine can cause at any time).
	noSession atomic.Int64
}

func newLinWorkload(c *testCluster, keys int, query string) *linWorkload {
	w := &linWorkload{c: c, query: query, start: time.Now(),
		client: &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}, Timeout: 6 * time.Second}}
	for i := range keys {
		w.keys = append(w.keys, fmt.Sprintf("lin-%d", i))
	}
	w.setLive(c.running()...)
	return w
}

func (w *linWorkload) setLive(nodes ...int) {
	w.liveMu.Lock()
	w.live = append([]int(nil), nodes...)
	w.liveMu.Unlock()
}

func (w *linWorkload) pick(r *rand.Rand) int {
	w.liveMu.Lock()
	defer w.liveMu.Unlock()
	return w.live[r.IntN(len(w.live))]
}

func (w *linWorkload) now() int64 { return time.Since(w.start).Nanoseconds() }

func (w *linWorkload) record(op porcupine.Operation) {
	w.mu.Lock()
	w.history = append(w.history, op)
	w.mu.Unlock()
}

// payload encodes a unique value at the start of a block.
func payload(value string) []byte {
	b := make([]byte, 4096)
	copy(b, value)
	return b
}

func decodeValue(b []byte) string {
	if i := bytes.IndexByte(b, 0); i >= 0 {
		b = b[:i]
	}
	return string(b)
}

// run starts clients until ctx ends and waits for them.
func (w *linWorkload) run(ctx context.Context, clients int) {
	var wg sync.WaitGroup
	for cl := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := rand.New(rand.NewPCG(uint64(cl), uint64(w.start.UnixNano())))
			for seq := 0; ctx.Err() == nil; seq++ {
				key := w.keys[r.IntN(len(w.keys))]
				node := w.pick(r)
				switch x := r.IntN(20); {
				case x < 9:
					w.write(cl, node, key, fmt.Sprintf("c%d-%d", cl, seq))
				case x < 10:
					w.write(cl, node, key, "")
				default:
					w.read(cl, node, key)
				}
			}
		}()
	}
	wg.Wait()
}

func (w *linWorkload) url(node int, key string) string {
	return w.c.url(node, "/block/"+key) + w.query
}

func (w *linWorkload) write(client, node int, key, value string) {
	method, body := http.MethodPut, payload(value)
	if value == "" {
		method, body = http.MethodDelete, nil
		w.deletes.Add(1)
	}
	call := w.now()
	status, err := w.do(method, w.url(node, key), body)
	ret := w.now()
	ok := err == nil && (status == http.StatusCreated || status == http.StatusNoContent)
	if !ok {
		// Maybe applied: it never returns, as far as the checker knows.
		ret = math.MaxInt64
		w.indeterminate.Add(1)
	} else {
		w.acked.Add(1)
	}
	w.record(porcupine.Operation{ClientId: client, Input: linInput{key: key, write: true, value: value}, Call: call, Return: ret})
}

func (w *linWorkload) read(client, node int, key string) {
	call := w.now()
	req, _ := http.NewRequest(http.MethodGet, w.url(node, key), nil)
	resp, err := w.client.Do(req)
	if err != nil {
		w.failedReads.Add(1)
		return
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	ret := w.now()
	var value string
	switch {
	case err != nil:
		w.failedReads.Add(1)
		return
	case resp.StatusCode == http.StatusOK:
		value = decodeValue(b)
	case resp.StatusCode == http.StatusNotFound:
	default:
		if resp.StatusCode == http.StatusServiceUnavailable {
			w.countRefused(b)
		}
		w.failedReads.Add(1)
		return
	}
	w.reads.Add(1)
	w.record(porcupine.Operation{ClientId: client, Input: linInput{key: key}, Output: value, Call: call, Return: ret})
}

func (w *linWorkload) do(method, url string, body []byte) (int, error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		return 0, err
	}
	resp, err := w.client.Do(req)
	if err != nil {
		return 0, err
	}
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	if resp.StatusCode == http.StatusServiceUnavailable {
		w.countRefused(b)
	}
	return resp.StatusCode, nil
}

// countRefused counts a 503 answer with body b.
func (w *linWorkload) countRefused(b []byte) {
	w.refused.Add(1)
	if bytes.Contains(b, []byte(membership.ErrNoSession.Error())) {
		w.noSession.Add(1)
	}
}

// check runs the checker and reports the figures.
func (w *linWorkload) check(t *testing.T) porcupine.CheckResult {
	t.Helper()
	w.mu.Lock()
	history := append([]porcupine.Operation(nil), w.history...)
	w.mu.Unlock()
	start := time.Now()
	res := porcupine.CheckOperationsTimeout(registerModel, history, 3*time.Minute)
	if dump := os.Getenv("GOBLOCKS_LIN_DUMP"); dump != "" && res != porcupine.Ok {
		f, err := os.Create(dump)
		if err == nil {
			for _, op := range history {
				in := op.Input.(linInput)
				fmt.Fprintf(f, "%s %v %q %q %d %d %d\n", in.key, in.write, in.value, op.Output, op.Call, op.Return, op.ClientId)
			}
			f.Close()
		}
	}
	t.Logf("history: %d operations (%d acknowledged writes, %d deletes attempted, %d indeterminate writes, %d reads, %d failed reads, %d answers 503): %s in %v",
		len(history), w.acked.Load(), w.deletes.Load(), w.indeterminate.Load(), w.reads.Load(), w.failedReads.Load(), w.refused.Load(), res, time.Since(start).Round(time.Millisecond))
	return res
}

// gate is a fault injector in front of a node's HTTP handler: pause holds
// every request (a stalled process, as seen by its peers and clients),
// slowWrites delays the replica writes it receives (a slow disk).
type gate struct {
	next       http.Handler
	mu         sync.Mutex
	paused     chan struct{} // non-nil while paused; closed on resume
	slowWrites atomic.Int64  // nanoseconds added to each replica write
}

func (g *gate) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	g.mu.Lock()
	p := g.paused
	g.mu.Unlock()
	if p != nil {
		select {
		case <-p:
		case <-r.Context().Done():
			return
		}
	}
	if d := time.Duration(g.slowWrites.Load()); d > 0 && isReplicaWrite(r) {
		time.Sleep(d) // the fault itself: a replica that is slow to store
	}
	g.next.ServeHTTP(w, r)
}

// isReplicaWrite: a request that stores replica copies (not a read or a
// version query).
func isReplicaWrite(r *http.Request) bool {
	return r.URL.Path == "/internal/batch/apply" ||
		(strings.HasPrefix(r.URL.Path, "/internal/block/") && (r.Method == http.MethodPut || r.Method == http.MethodDelete))
}

func (g *gate) pause() {
	g.mu.Lock()
	if g.paused == nil {
		g.paused = make(chan struct{})
	}
	g.mu.Unlock()
}

func (g *gate) resume() {
	g.mu.Lock()
	if g.paused != nil {
		close(g.paused)
		g.paused = nil
	}
	g.mu.Unlock()
}

// gates wraps every node's handler in a gate, kept across restarts.
type gates struct {
	mu sync.Mutex
	by map[int]*gate
}

func (gs *gates) wrap(i int, h http.Handler) http.Handler {
	gs.mu.Lock()
	defer gs.mu.Unlock()
	if gs.by == nil {
		gs.by = map[int]*gate{}
	}
	g := gs.by[i]
	if g == nil {
		g = &gate{}
		gs.by[i] = g
	}
	g.next = h
	return g
}

func (gs *gates) of(i int) *gate {
	gs.mu.Lock()
	defer gs.mu.Unlock()
	return gs.by[i]
}

// hold waits d unless the test is over (a fault's duration, not a wait
// for a condition).
func hold(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}

// TestLinearizableUnderFaults runs a 5-node cluster on a real ZooKeeper
// with 10 clients on 6 hot blocks through: a stalled node, a crash and
// restart with its data, a ZooKeeper restart and slow replica writes
// (GOBLOCKS_JEPSEN=long adds a graceful leave and rejoin and a join, and
// runs longer; `make jepsen`). Nodes must keep serving through the
// ZooKeeper restart, and the history must be linearizable.
func TestLinearizableUnderFaults(t *testing.T) {
	long := os.Getenv("GOBLOCKS_JEPSEN") == "long"
	if testing.Short() && !long {
		t.Skip("short mode")
	}
	zk := zktest.Start(t)
	gs := &gates{}
	const sessionTimeout = 4 * time.Second
	c := startCluster(t, 5, clusterOpts{zk: zk, zkRoot: "/lin", grace: 3 * time.Second, sessionTimeout: sessionTimeout, wrapHandler: gs.wrap})
	c.t = t
	c.waitStable(t, 5)
	w := newLinWorkload(c, 6, "")
	ctx, stop := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); w.run(ctx, 10) }()
	phase := func(name string, d time.Duration) { t.Logf("fault: %s", name); hold(ctx, d) }
	rounds := 1
	if long {
		rounds = 4
	}
	for range rounds {
		phase("none", time.Second)

		gs.of(1).pause()
		phase("n1 stalled", 2*time.Second)
		gs.of(1).resume()

		w.setLive(0, 1, 3, 4)
		c.kill(2)
		phase("n2 killed", 2*time.Second)
		c.start(t, 2, nil)
		w.setLive(c.running()...)
		waitHealthy(t, c)

		before := w.noSession.Load()
		restartStart := time.Now()
		zk.Restart(t)
		down := time.Since(restartStart)
		phase("ZooKeeper restarted", time.Second)
		// Sessions outlive a restart their clients reconnect within. A
		// JVM start on two loaded cores can take longer than the
		// 4 s session timeout, and then the sessions rightly expire.
		switch got := w.noSession.Load() - before; {
		case got != 0 && down < sessionTimeout/2:
			t.Errorf("%d requests refused for want of a ZooKeeper session during its restart (down %v, session timeout %v); sessions were valid", got, down.Round(time.Millisecond), sessionTimeout)
		case got != 0:
			t.Logf("%d requests refused for want of a ZooKeeper session: ZooKeeper was down %v, sessions of %v could expire", got, down.Round(time.Millisecond), sessionTimeout)
		}

		gs.of(3).slowWrites.Store(int64(20 * time.Millisecond))
		gs.of(4).slowWrites.Store(int64(20 * time.Millisecond))
		phase("slow replica writes on n3, n4", 2*time.Second)
		gs.of(3).slowWrites.Store(0)
		gs.of(4).slowWrites.Store(0)

		if long {
			w.setLive(0, 1, 2, 3)
			c.stop(4)
			phase("n4 left gracefully", 2*time.Second)
			c.start(t, 4, nil)
			waitHealthy(t, c)
			j := c.addNode(t)
			waitHealthy(t, c)
			w.setLive(c.running()...)
			phase(fmt.Sprintf("n%d joined", j), 3*time.Second)
		}
	}
	stop()
	<-done
	// After healing, one quorum read of every block through every node.
	for _, i := range c.running() {
		for _, k := range w.keys {
			w.read(0, i, k)
		}
	}
	if res := w.check(t); res != porcupine.Ok {
		t.Fatalf("history is %s, want linearizable", res)
	}
}

func waitHealthy(t *testing.T, c *testCluster) {
	t.Helper()
	testkit.Eventually(t, 30*time.Second, func() error {
		for _, i := range c.running() {
			status, body, _, err := c.do(http.MethodGet, c.url(i, "/health"), nil)
			if err != nil || status != http.StatusOK {
				return fmt.Errorf("n%d: %d %s %v", i, status, body, err)
			}
		}
		return nil
	})
}

// TestLinearizabilityCheckerCatchesBrokenConfigs shows that the checker
// above does not pass by accident: on a 3-node cluster whose replicas n1
// and n2 are slow to store writes, reads and writes at consistency=one,
// and quorum reads with the old background read repair, both produce
// histories it rejects, while the default configuration under the same
// fault passes.
func TestLinearizabilityCheckerCatchesBrokenConfigs(t *testing.T) {
	for _, tc := range []struct {
		name       string
		query      string
		readRepair string
		want       porcupine.CheckResult
	}{
		{name: "consistency one", query: "?consistency=one", want: porcupine.Illegal},
		{name: "background read repair", readRepair: "background", want: porcupine.Illegal},
		{name: "default (control)", want: porcupine.Ok},
	} {
		t.Run(tc.name, func(t *testing.T) {
			gs := &gates{}
			c := startCluster(t, 3, clusterOpts{storage: "memory", readRepair: tc.readRepair, wrapHandler: gs.wrap, noHints: true})
			for _, i := range []int{1, 2} {
				gs.of(i).slowWrites.Store(int64(15 * time.Millisecond))
			}
			// A violation shows up within seconds; a correct configuration
			// runs every attempt.
			var res porcupine.CheckResult
			for attempt := 0; attempt < 4; attempt++ {
				w := newLinWorkload(c, 2, tc.query)
				w.keys = []string{fmt.Sprintf("neg-%d-a", attempt), fmt.Sprintf("neg-%d-b", attempt)}
				ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
				w.run(ctx, 8)
				cancel()
				if res = w.check(t); res == porcupine.Illegal {
					break
				}
			}
			if res != tc.want {
				t.Fatalf("checker says %s, want %s", res, tc.want)
			}
		})
	}
}
