package transport_test

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/goblocks/goblocks/node/api"
	"github.com/goblocks/goblocks/node/auth"
	"github.com/goblocks/goblocks/node/storage"
	"github.com/goblocks/goblocks/node/storage/memory"
	"github.com/goblocks/goblocks/node/transport"
	"github.com/goblocks/goblocks/node/wire"
)

const testBlockSize = 512

// realPeer is a node's HTTP handler (node/api) over a memory engine, on a
// listener that counts and can cut its connections.
type realPeer struct {
	ln    *trackingListener
	local storage.Engine
	tok   *auth.Token
}

func newRealPeer(t *testing.T) *realPeer {
	t.Helper()
	p := &realPeer{local: memory.New(), tok: auth.NewToken("tok-0123456789abcdef")}
	h := api.NewHandler(api.Options{Self: "peer", BlockSize: testBlockSize, Local: p.local, Token: p.tok})
	raw, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p.ln = &trackingListener{Listener: raw}
	srv := api.NewServer(raw.Addr().String(), h)
	go func() { _ = srv.Serve(p.ln) }()
	t.Cleanup(func() { _ = srv.Close(); h.CloseStreams(); p.ln.cut() })
	return p
}

func (p *realPeer) addr() string { return p.ln.Addr().String() }

type trackingListener struct {
	net.Listener
	accepted atomic.Int64
	mu       sync.Mutex
	conns    []net.Conn
}

func (l *trackingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		l.accepted.Add(1)
		l.mu.Lock()
		l.conns = append(l.conns, c)
		l.mu.Unlock()
	}
	return c, err
}

// cut closes every connection accepted so far, as a crashed peer would.
func (l *trackingListener) cut() {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, c := range l.conns {
		c.Close()
	}
	l.conns = nil
}

func block(ts int) storage.Record {
	data := bytes.Repeat([]byte{byte(ts)}, testBlockSize)
	return storage.NewRecord(data, version(ts))
}

// Concurrent calls of every kind share one connection per peer: batches
// go over the stream, answered correctly whatever their order.
func TestStreamCarriesBatches(t *testing.T) {
	checkLeaks(t)
	peer := newRealPeer(t)
	c := transport.NewClient(transport.Options{Token: peer.tok, MaxBlockSize: testBlockSize})
	defer c.Close()
	const n = 64
	var wg sync.WaitGroup
	errs := make(chan error, 4*n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			id := fmt.Sprint("b", i)
			held, err := c.Apply(t.Context(), peer.addr(), id, block(i+2))
			if err != nil || held != version(i+2) {
				errs <- fmt.Errorf("Apply %s: %v, %v", id, held, err)
				return
			}
			rec, err := c.Fetch(t.Context(), peer.addr(), id)
			if err != nil || !bytes.Equal(rec.Data, block(i+2).Data) {
				errs <- fmt.Errorf("Fetch %s: %v, %v", id, rec.Version, err)
			}
			for _, f := range []func(context.Context, string, string) (storage.Meta, error){c.FetchMeta, c.FetchDigest} {
				if m, err := f(t.Context(), peer.addr(), id); err != nil || m.Version != version(i+2) {
					errs <- fmt.Errorf("meta of %s: %v, %v", id, m.Version, err)
				}
			}
			if _, err := c.FetchMeta(t.Context(), peer.addr(), "absent"+id); !errors.Is(err, storage.ErrNotFound) {
				errs <- fmt.Errorf("meta of an absent block: %v", err)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	// A refused record reports the newer version the peer holds.
	if held, err := c.Apply(t.Context(), peer.addr(), "b0", block(1)); err != nil || held != version(2) {
		t.Errorf("stale Apply: held %v, %v; want %v", held, err, version(2))
	}
	batches, _ := c.BatchStats()
	if got := c.Streamed(); got != batches || got == 0 {
		t.Errorf("%d of %d batches went over the stream", got, batches)
	}
	if got := peer.ln.accepted.Load(); got != 1 {
		t.Errorf("%d connections to the peer; want 1", got)
	}
}

// A peer without streams (an older version) gets HTTP batches, and is not
// asked again on every call.
func TestStreamFallsBackToHTTP(t *testing.T) {
	checkLeaks(t)
	peer := newFakePeer(t, nil)
	c := transport.NewClient(transport.Options{})
	defer c.Close()
	for i := range 10 {
		if _, err := c.Apply(t.Context(), peer.addr(), "b", record(i+1)); err != nil {
			t.Fatal(err)
		}
	}
	if probes, _ := peer.counts(wire.PathStream); probes != 1 {
		t.Errorf("%d stream upgrades tried; want 1", probes)
	}
	if requests, _ := peer.counts(wire.PathBatchApply); requests != 10 {
		t.Errorf("%d HTTP batches; want 10", requests)
	}
	if got := c.Streamed(); got != 0 {
		t.Errorf("%d batches streamed to a peer without streams", got)
	}
}

// A peer that refuses the token refuses the stream: calls fail with its
// answer, they do not fall back to HTTP.
func TestStreamUnauthorized(t *testing.T) {
	checkLeaks(t)
	peer := newRealPeer(t)
	c := transport.NewClient(transport.Options{Token: auth.NewToken("other-0123456789abcdef"), MaxBlockSize: testBlockSize})
	defer c.Close()
	_, err := c.Apply(t.Context(), peer.addr(), "b", block(1))
	if !errors.Is(err, transport.ErrRemote) || !bytes.Contains([]byte(err.Error()), []byte("401")) {
		t.Fatalf("Apply with a wrong token: %v; want a 401 from the peer", err)
	}
	if _, err := peer.local.Get("b"); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("block stored without the token: %v", err)
	}
}

// When the peer's connections are cut (a crash, a restart), the next call
// opens a new stream.
func TestStreamReopensAfterPeerCut(t *testing.T) {
	checkLeaks(t)
	peer := newRealPeer(t)
	c := transport.NewClient(transport.Options{Token: peer.tok, MaxBlockSize: testBlockSize})
	defer c.Close()
	if _, err := c.Apply(t.Context(), peer.addr(), "b", block(1)); err != nil {
		t.Fatal(err)
	}
	peer.ln.cut()
	eventually(t, "a call succeeds on a new stream", func() bool {
		_, err := c.Apply(t.Context(), peer.addr(), "b", block(2))
		return err == nil
	})
	if got := peer.ln.accepted.Load(); got != 2 {
		t.Errorf("%d connections; want 2", got)
	}
}

// rawStreamPeer accepts streams, answers the upgrade, and hands each
// connection to serve.
func rawStreamPeer(t *testing.T, serve func(conn net.Conn, br *bufio.Reader)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer conn.Close()
				br := bufio.NewReader(conn)
				if _, err := http.ReadRequest(br); err != nil {
					return
				}
				_, _ = conn.Write([]byte("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: " + wire.StreamProtocol + "\r\n\r\n"))
				serve(conn, br)
			}()
		}
	}()
	return ln.Addr().String()
}

// Calls pending on a stream fail as soon as the peer goes away after
// taking their requests; they do not wait for their deadline.
func TestStreamPendingCallsFailWhenPeerCloses(t *testing.T) {
	checkLeaks(t)
	addr := rawStreamPeer(t, func(conn net.Conn, br *bufio.Reader) {
		_, _ = wire.ReadStreamRequest(br, wire.MaxStreamBody(testBlockSize))
		// and hang up without answering
	})
	c := transport.NewClient(transport.Options{MaxBlockSize: testBlockSize})
	defer c.Close()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	_, err := c.Apply(ctx, addr, "b", block(1))
	if err == nil || ctx.Err() != nil {
		t.Fatalf("Apply to a peer that hung up: %v (context: %v); want a prompt error", err, ctx.Err())
	}
}

// A peer that keeps the connection but never answers fails the calls
// pending on it after the stream's idle time.
func TestStreamStalledPeer(t *testing.T) {
	checkLeaks(t)
	release := make(chan struct{})
	addr := rawStreamPeer(t, func(conn net.Conn, br *bufio.Reader) { <-release })
	defer close(release)
	c := transport.NewClientWithStreamIdle(transport.Options{MaxBlockSize: testBlockSize}, 200*time.Millisecond)
	defer c.Close()
	_, err := c.Apply(t.Context(), addr, "b", block(1))
	if !errors.Is(err, transport.ErrRemote) {
		t.Fatalf("Apply to a stalled peer: %v; want ErrRemote", err)
	}
}

// Close fails the calls waiting on streams with the client closed.
func TestStreamClose(t *testing.T) {
	checkLeaks(t)
	release := make(chan struct{})
	got := make(chan struct{}, 1)
	addr := rawStreamPeer(t, func(conn net.Conn, br *bufio.Reader) {
		_, _ = wire.ReadStreamRequest(br, wire.MaxStreamBody(testBlockSize))
		got <- struct{}{}
		<-release
	})
	defer close(release)
	c := transport.NewClient(transport.Options{MaxBlockSize: testBlockSize})
	errc := make(chan error, 1)
	go func() {
		_, err := c.Apply(context.Background(), addr, "b", block(1))
		errc <- err
	}()
	<-got
	c.Close()
	if err := <-errc; !errors.Is(err, transport.ErrClientClosed) {
		t.Fatalf("pending Apply after Close: %v; want ErrClientClosed", err)
	}
}

// A sampled call's trace context travels in the frame of its batch, with
// its block id, so the peer's span continues the caller's trace.
func TestStreamCarriesTraceContext(t *testing.T) {
	checkLeaks(t)
	frames := make(chan wire.StreamRequest, 1)
	addr := rawStreamPeer(t, func(conn net.Conn, br *bufio.Reader) {
		q, err := wire.ReadStreamRequest(br, wire.MaxStreamBody(testBlockSize))
		if err != nil {
			return
		}
		frames <- q
		_, _ = conn.Write(wire.AppendStreamResponse(nil, wire.StreamResponse{ID: q.ID, Status: 200, Body: []byte{wire.ResultApplied}}))
	})
	c := transport.NewClient(transport.Options{MaxBlockSize: testBlockSize, Propagator: propagation.TraceContext{}})
	defer c.Close()
	traceID, _ := trace.TraceIDFromHex("4bf92f3577b34da6a3ce929d0e0e4736")
	spanID, _ := trace.SpanIDFromHex("00f067aa0ba902b7")
	ctx := trace.ContextWithSpanContext(t.Context(), trace.NewSpanContext(trace.SpanContextConfig{
		TraceID: traceID, SpanID: spanID, TraceFlags: trace.FlagsSampled}))
	if _, err := c.Apply(ctx, addr, "traced", block(1)); err != nil {
		t.Fatal(err)
	}
	q := <-frames
	want := "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	if len(q.Traces) != 1 || q.Traces[0]["traceparent"] != want || q.Traces[0][wire.TraceBlockID] != "traced" {
		t.Fatalf("frame traces = %v; want traceparent %s for block traced", q.Traces, want)
	}
}

// An idle stream closes, leaving neither a goroutine nor state behind;
// the next call opens a new one.
func TestStreamRetiresWhenIdle(t *testing.T) {
	checkLeaks(t)
	peer := newRealPeer(t)
	c := transport.NewClientWithStreamIdle(transport.Options{Token: peer.tok, MaxBlockSize: testBlockSize}, 50*time.Millisecond)
	defer c.Close()
	for round := range 2 {
		if _, err := c.Apply(t.Context(), peer.addr(), "b", block(round+1)); err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
		eventually(t, "the idle stream closes", func() bool {
			return c.StreamSlots() == 0 && len(goroutines("transport.(*peerStream).readLoop", "")) == 0
		})
	}
	if got := peer.ln.accepted.Load(); got != 2 {
		t.Errorf("%d connections; want 2 (one per round)", got)
	}
}
