//go:build e2e

package e2e

import (
	"crypto/rand"
	"crypto/sha256"
	"fmt"
	mrand "math/rand/v2"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

const blockSize = 4096

// Pacing keeps the workload modest on 2 cores next to 3-5 nodes and a
// ZooKeeper JVM: 4 writers at ~30 writes/s each, 2 readers at ~40 reads/s.
const (
	writers       = 4
	keysPerWriter = 40
	writeEvery    = 33 * time.Millisecond
	readers       = 2
	readEvery     = 25 * time.Millisecond
)

// history is what the workload knows about one id. Each id has a single
// writer, so attempts are sequential; every attempt is numbered (from 1)
// before it is sent and its content hash remembered, acknowledged or not.
type history struct {
	attempts map[[32]byte]int // content hash -> attempt number
	n        int              // attempts so far
	acked    int              // latest acknowledged attempt, 0: none
	ackedSum [32]byte
}

// workload writes and reads continuously through the active nodes and
// checks every read against the history: a read must return the latest
// write acknowledged before the read began, or a later attempt (an
// unacknowledged write may or may not have landed). Anything older, a 404
// for an acknowledged id, or content never written is a violation.
type workload struct {
	c    *cluster
	stop chan struct{}
	wg   sync.WaitGroup

	mu  sync.Mutex
	ids map[string]*history

	acks, writeErrs     atomic.Int64
	reads, readErrs     atomic.Int64
	violations          atomic.Int64
	windowErrs          atomic.Int64 // client errors while window is open
	window              atomic.Bool
	firstViolationsMu   sync.Mutex
	firstViolationsList []string
}

func startWorkload(t *testing.T, c *cluster) *workload {
	w := &workload{c: c, stop: make(chan struct{}), ids: map[string]*history{}}
	for wr := range writers {
		for k := range keysPerWriter {
			w.ids[fmt.Sprintf("w%d-%d", wr, k)] = &history{attempts: map[[32]byte]int{}}
		}
	}
	for wr := range writers {
		w.wg.Add(1)
		go w.writer(wr)
	}
	for range readers {
		w.wg.Add(1)
		go w.reader()
	}
	t.Cleanup(w.finish) // idempotent: stops the goroutines if the test ends early
	return w
}

// target picks a random active node.
func (w *workload) target() *node {
	ns := w.c.active()
	if len(ns) == 0 {
		return nil
	}
	return ns[mrand.IntN(len(ns))]
}

func (w *workload) clientError() {
	if w.window.Load() {
		w.windowErrs.Add(1)
	}
}

func (w *workload) writer(wr int) {
	defer w.wg.Done()
	tick := time.NewTicker(writeEvery) // pacing, not a wait for a condition
	defer tick.Stop()
	for k := 0; ; k++ {
		select {
		case <-w.stop:
			return
		case <-tick.C:
		}
		n := w.target()
		if n == nil {
			continue
		}
		id := fmt.Sprintf("w%d-%d", wr, k%keysPerWriter)
		data := randomBlock()
		sum := sha256.Sum256(data)
		w.mu.Lock()
		h := w.ids[id]
		h.n++
		attempt := h.n
		h.attempts[sum] = attempt
		w.mu.Unlock()
		if _, err := w.c.put(n, id, data); err != nil {
			w.writeErrs.Add(1)
			w.clientError()
			continue
		}
		w.mu.Lock()
		h.acked, h.ackedSum = attempt, sum
		w.mu.Unlock()
		w.acks.Add(1)
	}
}

func (w *workload) reader() {
	defer w.wg.Done()
	tick := time.NewTicker(readEvery) // pacing
	defer tick.Stop()
	for {
		select {
		case <-w.stop:
			return
		case <-tick.C:
		}
		n := w.target()
		if n == nil {
			continue
		}
		id := fmt.Sprintf("w%d-%d", mrand.IntN(writers), mrand.IntN(keysPerWriter))
		w.mu.Lock()
		floor := w.ids[id].acked
		w.mu.Unlock()
		code, body, err := w.c.get(n, id)
		w.reads.Add(1)
		if err != nil || code >= 500 {
			w.readErrs.Add(1)
			w.clientError()
			continue
		}
		if problem := w.judge(id, floor, code, body); problem != "" {
			w.violation(fmt.Sprintf("concurrent read of %s via %s: %s", id, n.name, problem))
		}
	}
}

// judge checks one read against the history; floor is the latest
// acknowledged attempt when the read began. It returns "" when the read
// is allowed.
func (w *workload) judge(id string, floor, code int, body []byte) string {
	switch {
	case code == http.StatusNotFound && floor > 0:
		return fmt.Sprintf("404 for a block acknowledged %d time(s)", floor)
	case code == http.StatusNotFound:
		return ""
	case code != http.StatusOK:
		return fmt.Sprintf("status %d %q", code, body)
	case len(body) != blockSize:
		return fmt.Sprintf("%d bytes", len(body))
	}
	w.mu.Lock()
	got, ok := w.ids[id].attempts[sha256.Sum256(body)]
	w.mu.Unlock()
	switch {
	case !ok:
		return "content that was never written"
	case got < floor:
		return fmt.Sprintf("attempt %d, older than the acknowledged attempt %d", got, floor)
	}
	return ""
}

func (w *workload) violation(s string) {
	w.violations.Add(1)
	w.firstViolationsMu.Lock()
	if len(w.firstViolationsList) < 10 {
		w.firstViolationsList = append(w.firstViolationsList, s)
	}
	w.firstViolationsMu.Unlock()
}

// openWindow starts counting client errors of a topology change;
// closeWindow stops and returns the count.
func (w *workload) openWindow() { w.windowErrs.Store(0); w.window.Store(true) }
func (w *workload) closeWindow() int64 {
	w.window.Store(false)
	return w.windowErrs.Load()
}

func (w *workload) finish() {
	select {
	case <-w.stop:
	default:
		close(w.stop)
	}
	w.wg.Wait()
}

// verify stops the workload, then reads every acknowledged id through
// every active node and returns how many reads did not return the latest
// acknowledged content (or a later attempt). It reports the first few.
func (w *workload) verify(t *testing.T) (acked int, lost int64) {
	t.Helper()
	w.finish()
	type check struct {
		id    string
		floor int
	}
	var checks []check
	w.mu.Lock()
	for id, h := range w.ids {
		if h.acked > 0 {
			checks = append(checks, check{id, h.acked})
		}
	}
	w.mu.Unlock()
	nodes := w.c.active()
	var lostN atomic.Int64
	var mu sync.Mutex
	var firsts []string
	parallel(8, len(checks)*len(nodes), func(i int) {
		ch, n := checks[i/len(nodes)], nodes[i%len(nodes)]
		var problem string
		code, body, err := w.c.get(n, ch.id)
		if err != nil {
			problem = err.Error()
		} else if code != http.StatusOK {
			problem = fmt.Sprintf("status %d %q", code, body)
		} else {
			problem = w.judge(ch.id, ch.floor, code, body)
		}
		if problem != "" {
			lostN.Add(1)
			mu.Lock()
			if len(firsts) < 5 {
				firsts = append(firsts, fmt.Sprintf("%s via %s: %s", ch.id, n.name, problem))
			}
			mu.Unlock()
		}
	})
	for _, f := range firsts {
		t.Errorf("acknowledged write not read back: %s", f)
	}
	w.firstViolationsMu.Lock()
	for _, v := range w.firstViolationsList {
		t.Errorf("violation: %s", v)
	}
	w.firstViolationsMu.Unlock()
	return len(checks), lostN.Load()
}

// ackedIDs lists the ids with at least one acknowledged write.
func (w *workload) ackedIDs() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []string
	for id, h := range w.ids {
		if h.acked > 0 {
			out = append(out, id)
		}
	}
	return out
}

func randomBlock() []byte {
	b := make([]byte, blockSize)
	_, _ = rand.Read(b)
	return b
}

// preload writes n blocks (ids pre-0..) through the active nodes so a
// migration has data to move; it returns their contents.
func preload(t *testing.T, c *cluster, n int) map[string][]byte {
	t.Helper()
	want := make(map[string][]byte, n)
	var mu sync.Mutex
	var firstErr error
	nodes := c.active()
	parallel(8, n, func(i int) {
		id := fmt.Sprintf("pre-%d", i)
		data := randomBlock()
		node := nodes[i%len(nodes)]
		// A write may meet a node that is still settling; a few retries
		// keep the preload from flaking (it is not under test).
		err := poll(t.Context(), 20*time.Second, func() error {
			_, err := c.put(node, id, data)
			return err
		})
		mu.Lock()
		defer mu.Unlock()
		if err != nil {
			firstErr = cmpErr(firstErr, fmt.Errorf("preload %s via %s: %w", id, node.name, err))
			return
		}
		want[id] = data
	})
	if firstErr != nil {
		t.Fatal(firstErr)
	}
	return want
}

// checkPreloaded reads every preloaded block through every active node.
func checkPreloaded(t *testing.T, c *cluster, want map[string][]byte) (lost int64) {
	t.Helper()
	ids := keys(want)
	nodes := c.active()
	var n atomic.Int64
	var mu sync.Mutex
	var firsts []string
	parallel(8, len(ids)*len(nodes), func(i int) {
		id, node := ids[i/len(nodes)], nodes[i%len(nodes)]
		code, body, err := c.get(node, id)
		if err == nil && code == http.StatusOK && string(body) == string(want[id]) {
			return
		}
		n.Add(1)
		mu.Lock()
		if len(firsts) < 5 {
			firsts = append(firsts, fmt.Sprintf("%s via %s: status %d err %v", id, node.name, code, err))
		}
		mu.Unlock()
	})
	for _, f := range firsts {
		t.Errorf("preloaded block not read back: %s", f)
	}
	return n.Load()
}

func keys(m map[string][]byte) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	return out
}
