package transport_test

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/goblocks/goblocks/internal/testkit"
	"github.com/goblocks/goblocks/node/hlc"
	"github.com/goblocks/goblocks/node/storage"
	"github.com/goblocks/goblocks/node/wire"
)

// fakePeer serves the internal batch endpoints from a map, speaking the
// frame formats of node/wire as node/api does.
type fakePeer struct {
	srv *httptest.Server
	// gate, when set, holds every request until it is closed or the
	// request is cancelled.
	gate chan struct{}

	mu   sync.Mutex
	recs map[string]storage.Record
	// requests and records count batch requests and the records they
	// carried, by path.
	requests map[string]int
	records  map[string]int
}

// newFakePeer starts a peer; gate may be nil. The server closes when the
// test ends.
func newFakePeer(t *testing.T, gate chan struct{}) *fakePeer {
	t.Helper()
	p := &fakePeer{gate: gate, recs: map[string]storage.Record{}, requests: map[string]int{}, records: map[string]int{}}
	p.srv = httptest.NewServer(p)
	t.Cleanup(p.srv.Close)
	return p
}

func (p *fakePeer) addr() string { return p.srv.Listener.Addr().String() }

func (p *fakePeer) put(id string, rec storage.Record) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.recs[id] = rec
}

// counts returns the batch requests and records the peer received on path.
func (p *fakePeer) counts(path string) (requests, records int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.requests[path], p.records[path]
}

func (p *fakePeer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	// Reading the body to its end first lets the server notice a client
	// that hangs up (and cancel r.Context()) while the gate holds us.
	body, err := io.ReadAll(r.Body)
	if err != nil {
		return
	}
	r.Body = io.NopCloser(bytes.NewReader(body))
	if p.gate != nil {
		select {
		case <-p.gate:
		case <-r.Context().Done():
			return
		}
	}
	switch r.URL.Path {
	case wire.PathBatchApply:
		p.apply(w, r)
	case wire.PathBatchFetch:
		p.fetch(w, r)
	case wire.PathBatchMeta, wire.PathBatchDigest:
		// The fake holds no damaged copies: a digest is its metadata.
		p.meta(w, r)
	default:
		// An older peer: no streams, and the probe is counted.
		p.mu.Lock()
		p.requests[r.URL.Path]++
		p.mu.Unlock()
		http.NotFound(w, r)
	}
}

func (p *fakePeer) apply(w http.ResponseWriter, r *http.Request) {
	dec := wire.NewDecoder(r.Body, 4096)
	var out []byte
	p.mu.Lock()
	defer p.mu.Unlock()
	p.requests[r.URL.Path]++
	for {
		id, rec, err := dec.Decode()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		p.records[r.URL.Path]++
		res := wire.ApplyResult{Applied: true}
		if old, ok := p.recs[id]; ok && old.Version.Compare(rec.Version) >= 0 {
			res = wire.ApplyResult{Held: old.Version}
		} else {
			p.recs[id] = rec
		}
		out = wire.AppendApplyResult(out, res)
	}
	_, _ = w.Write(out)
}

// readIDs decodes an id list and counts the request and its ids.
func (p *fakePeer) readIDs(w http.ResponseWriter, r *http.Request) ([]string, bool) {
	ids, err := wire.DecodeIDs(r.Body, func(string) error { return nil })
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return nil, false
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.requests[r.URL.Path]++
	p.records[r.URL.Path] += len(ids)
	return ids, true
}

func (p *fakePeer) fetch(w http.ResponseWriter, r *http.Request) {
	ids, ok := p.readIDs(w, r)
	if !ok {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	bw := bufio.NewWriterSize(w, 64<<10)
	enc := wire.NewEncoder(bw) // shares bw: status bytes and frames stay in order
	for _, id := range ids {
		rec, ok := p.recs[id]
		if !ok {
			_ = bw.WriteByte(wire.FetchAbsent)
			continue
		}
		_ = bw.WriteByte(wire.FetchFound)
		_ = enc.Encode(id, rec)
	}
	_ = bw.Flush()
}

func (p *fakePeer) meta(w http.ResponseWriter, r *http.Request) {
	ids, ok := p.readIDs(w, r)
	if !ok {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []byte
	for _, id := range ids {
		rec, ok := p.recs[id]
		if !ok {
			out = append(out, wire.FetchAbsent)
			continue
		}
		out = wire.AppendMeta(append(out, wire.FetchFound), rec.Meta())
	}
	_, _ = w.Write(out)
}

func version(ts int) hlc.Version { return hlc.Version{Timestamp: hlc.Timestamp(ts), Node: "n1"} }

func record(ts int) storage.Record {
	return storage.NewRecord([]byte(strings.Repeat("x", ts%64+1)), version(ts))
}

// goroutines returns the stacks of the goroutines that have a frame whose
// name contains frame and, if state is not empty, whose state starts with
// state ("select", "chan send", ...).
func goroutines(frame, state string) []string {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	var out []string
	for _, g := range strings.Split(string(buf), "\n\n") {
		header, _, _ := strings.Cut(g, "\n")
		if strings.Contains(g, frame) && (state == "" || strings.Contains(header, "["+state)) {
			out = append(out, g)
		}
	}
	return out
}

// pipelineFrame matches the goroutines a pipeline starts: its run loop and
// the batches it sends.
const pipelineFrame = "node/transport.(*pipeline)"

// eventually polls cond until it holds, failing the test after a deadline.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	testkit.Eventually(t, 10*time.Second, func() error {
		if !cond() {
			return fmt.Errorf("not yet: %s", what)
		}
		return nil
	})
}

// checkLeaks fails the test if goroutines it started outlive it. Call it
// first so its cleanup runs after the others (servers, clients).
func checkLeaks(t *testing.T) {
	t.Helper()
	before := runtime.NumGoroutine()
	t.Cleanup(func() {
		deadline := time.Now().Add(10 * time.Second)
		for runtime.NumGoroutine() > before || len(goroutines("goblocks/node/transport.", "")) > 0 {
			if time.Now().After(deadline) {
				buf := make([]byte, 1<<20)
				t.Fatalf("goroutines leaked: %d, %d before the test:\n%s", runtime.NumGoroutine(), before, buf[:runtime.Stack(buf, true)])
			}
			time.Sleep(time.Millisecond)
		}
	})
}

// within runs f in a goroutine and fails the test if it has not returned
// after d: a hung call is reported instead of hanging the test binary.
func within(t *testing.T, d time.Duration, what string, f func()) {
	t.Helper()
	done := make(chan struct{})
	go func() {
		defer close(done)
		f()
	}()
	select {
	case <-done:
	case <-time.After(d):
		buf := make([]byte, 1<<20)
		t.Fatalf("%s did not return within %v:\n%s", what, d, buf[:runtime.Stack(buf, true)])
	}
}
