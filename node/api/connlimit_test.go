package api

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

func serveLimited(t *testing.T, max int, h http.Handler) (*ConnLimiter, string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l := NewConnLimiter(ln, max, nil)
	srv := NewServer(ln.Addr().String(), h)
	srv.ConnState = l.ConnState
	go func() { _ = srv.Serve(l) }()
	t.Cleanup(func() { _ = srv.Close() })
	return l, ln.Addr().String()
}

// keepAlive opens a connection, makes one request on it and leaves it open
// and idle, as a client of a keep-alive pool (or a flood) does.
func keepAlive(t *testing.T, addr string) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	fmt.Fprintf(c, "GET /x HTTP/1.1\r\nHost: x\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return c
}

// A flood of idle keep-alive connections once made a node unreachable
// for 90 s: at the cap, the longest-idle connection now makes room.
func TestConnLimiterEvictsIdleConnections(t *testing.T) {
	const max = 16
	l, addr := serveLimited(t, max, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "ok") }))
	for range 3 * max {
		keepAlive(t, addr)
	}
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := client.Get("http://" + addr + "/x")
	if err != nil {
		t.Fatalf("a new client at the cap: %v", err)
	}
	resp.Body.Close()
	l.mu.Lock()
	open := l.open
	l.mu.Unlock()
	if open > max {
		t.Fatalf("%d connections open, cap %d", open, max)
	}
	if got := testutil.ToFloat64(l.evicted); got < 2*max {
		t.Fatalf("evicted %v idle connections, want >= %d", got, 2*max)
	}
}

// When every connection is busy, a new one waits for a slot instead of
// growing the node's memory and descriptors without bound.
func TestConnLimiterWaitsWhenAllBusy(t *testing.T) {
	const max = 16
	release := make(chan struct{})
	entered := make(chan struct{}, 2*max)
	l, addr := serveLimited(t, max, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		entered <- struct{}{}
		if r.URL.Path == "/block" {
			<-release
		}
	}))
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	errs := make(chan error, max+1)
	get := func(path string) {
		resp, err := client.Get("http://" + addr + path)
		if err == nil {
			resp.Body.Close()
		}
		errs <- err
	}
	for range max {
		go get("/block")
	}
	for range max {
		<-entered
	}
	go get("/fast")
	select {
	case <-entered:
		t.Fatal("a request was served beyond the cap while every connection was busy")
	case err := <-errs:
		t.Fatalf("a request ended while every connection was busy: %v", err)
	case <-time.After(200 * time.Millisecond):
		// Proving a negative needs a bound; the positive below does not.
	}
	close(release)
	for range max + 1 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	if got := testutil.ToFloat64(l.evicted); got != 0 {
		t.Fatalf("evicted %v busy connections", got)
	}
}
