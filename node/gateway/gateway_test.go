package gateway

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"go.uber.org/goleak"

	"github.com/goblocks/goblocks/internal/testkit"
)

// noLeaks checks, after every other cleanup (the replicas' servers), that
// no goroutine the test started is left.
func noLeaks(t *testing.T) {
	base := goleak.IgnoreCurrent()
	t.Cleanup(func() { goleak.VerifyNone(t, base) })
}

// waitListening waits until Serve has opened port.
func waitListening(t *testing.T, port int) {
	t.Helper()
	testkit.Eventually(t, 10*time.Second, func() error {
		c, err := net.Dial("tcp", "127.0.0.1:"+strconv.Itoa(port))
		if err == nil {
			c.Close()
		}
		return err
	})
}

func TestParseRoute(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Route
		err  string
	}{
		{in: "3001-3009:3000/http", want: Route{First: 3001, Last: 3009, Target: 3000, HTTP: true}},
		{in: "10801-10809:10809", want: Route{First: 10801, Last: 10809, Target: 10809}},
		{in: "8080:80", want: Route{First: 8080, Last: 8080, Target: 80}},
		{in: "3001-3009", err: "want FIRST-LAST:TARGET"},
		{in: "3001-3009:3000/udp", err: "want FIRST-LAST:TARGET"},
		{in: "3009-3001:3000", err: "last port before first"},
		{in: "3001-x:3000", err: `port "x"`},
		{in: "0-3:70000", err: `port "0"`},
		{in: "", err: "want FIRST-LAST:TARGET"},
	} {
		got, err := ParseRoute(tc.in)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("ParseRoute(%q) = %v, %v; want error containing %q", tc.in, got, err, tc.err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("ParseRoute(%q) = %+v, %v; want %+v", tc.in, got, err, tc.want)
		}
	}
}

// replica is a stand-in node on its own loopback address: /health names it
// and /who answers its name and address, so a test sees which replica a
// gateway port reached.
type replica struct {
	name, host string
	srv        *httptest.Server
}

func startReplica(t *testing.T, name, host string, port int) *replica {
	t.Helper()
	ln, err := net.Listen("tcp", net.JoinHostPort(host, strconv.Itoa(port)))
	if err != nil {
		t.Skipf("loopback address %s: %v", host, err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/health", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintf(w, `{"status":"ok","node":%q}`, name)
	})
	mux.HandleFunc("/who", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintf(w, "%s@%s", name, host)
	})
	srv := httptest.NewUnstartedServer(mux)
	srv.Listener = ln
	srv.Start()
	r := &replica{name: name, host: host, srv: srv}
	t.Cleanup(srv.Close)
	return r
}

// freePortRange finds n consecutive free ports on 127.0.0.1.
func freePortRange(t *testing.T, n int) int {
	t.Helper()
	for try := 0; try < 50; try++ {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		first := ln.Addr().(*net.TCPAddr).Port
		ln.Close()
		if first+n > 65535 {
			continue
		}
		ok := true
		for p := first; p < first+n; p++ {
			l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(p))
			if err != nil {
				ok = false
				break
			}
			l.Close()
		}
		if ok {
			return first
		}
	}
	t.Fatal("no free port range")
	return 0
}

type hosts struct {
	mu sync.Mutex
	v  []string
}

func (h *hosts) set(v ...string) { h.mu.Lock(); h.v = v; h.mu.Unlock() }
func (h *hosts) lookup(context.Context, string) ([]string, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.v) == 0 {
		return nil, &net.DNSError{Err: "no such host", IsNotFound: true}
	}
	return append([]string(nil), h.v...), nil
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

// TestPortsFollowNames: port FIRST+i-1 reaches the replica named node-i
// whatever address it has, a missing replica gets a clear 503, a replica
// that comes back on a new address is found again, and Serve stops every
// goroutine it started.
func TestPortsFollowNames(t *testing.T) {
	noLeaks(t)
	port := freePortRange(t, 3)
	hp := freePortRange(t, 1)
	// Started in the "wrong" order: node-2 has the lower address.
	startReplica(t, "node-2", "127.0.0.2", hp)
	n1 := startReplica(t, "node-1", "127.0.0.3", hp)
	dns := &hosts{}
	dns.set("127.0.0.2", "127.0.0.3")
	g := &Gateway{
		Routes:     []Route{{First: port, Last: port + 2, Target: hp, HTTP: true}},
		Prefix:     "node-",
		ListenHost: "127.0.0.1",
		Log:        zerolog.Nop(),
		Dir:        &Directory{Service: "node", HealthPort: hp, LookupHost: dns.lookup, MinRefresh: -1},
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- g.Serve(ctx) }()
	url := func(i int) string { return fmt.Sprintf("http://127.0.0.1:%d/who", port+i-1) }
	waitListening(t, port)

	for i, want := range []string{"node-1@127.0.0.3", "node-2@127.0.0.2"} {
		if code, body := get(t, url(i+1)); code != 200 || body != want {
			t.Errorf("port %d: %d %q, want %q", port+i, code, body, want)
		}
	}
	code, body := get(t, url(3))
	var refusal struct{ Error string }
	if err := json.Unmarshal([]byte(body), &refusal); code != http.StatusServiceUnavailable || err != nil ||
		!strings.Contains(refusal.Error, "node-3 is not running") || !strings.Contains(refusal.Error, "running: node-1, node-2") {
		t.Errorf("port of a missing replica: %d %q", code, body)
	}

	// node-1 restarts on a new address: the cached one refuses, the
	// directory is refreshed and the same port reaches it again.
	n1.srv.Close()
	http.DefaultClient.CloseIdleConnections()
	startReplica(t, "node-1", "127.0.0.4", hp)
	dns.set("127.0.0.2", "127.0.0.4")
	if code, body := get(t, url(1)); code != 200 || body != "node-1@127.0.0.4" {
		t.Errorf("after node-1 moved: %d %q", code, body)
	}

	// The status page lists the mapping.
	rec := httptest.NewRecorder()
	g.StatusHandler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/health", nil))
	var st Status
	if err := json.Unmarshal(rec.Body.Bytes(), &st); err != nil || len(st.Nodes) != 2 ||
		st.Nodes[0] != (Mapping{"node-1", port, net.JoinHostPort("127.0.0.4", strconv.Itoa(hp))}) || st.Nodes[1].Port != port+1 {
		t.Errorf("status: %s", rec.Body)
	}

	http.DefaultClient.CloseIdleConnections()
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// TestNonHTTPRouteClosesForMissingReplica: a route that is not HTTP (NBD)
// gets no HTTP text, only a closed connection.
func TestNonHTTPRouteClosesForMissingReplica(t *testing.T) {
	noLeaks(t)
	port := freePortRange(t, 1)
	g := &Gateway{
		Routes: []Route{{First: port, Last: port, Target: 1}}, Prefix: "node-", ListenHost: "127.0.0.1",
		Log: zerolog.Nop(), Dir: &Directory{Service: "node", HealthPort: 1, LookupHost: (&hosts{}).lookup},
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- g.Serve(ctx) }()
	waitListening(t, port)
	c, err := net.Dial("tcp", "127.0.0.1:"+strconv.Itoa(port))
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(c)
	c.Close()
	if err != nil || len(got) != 0 {
		t.Errorf("read %q, %v; want a closed connection", got, err)
	}
	cancel()
	<-done
}

// TestServeReportsBusyPort: a port already taken fails Serve at once, with
// every port it opened closed again.
func TestServeReportsBusyPort(t *testing.T) {
	port := freePortRange(t, 2)
	busy, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(port+1))
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	g := &Gateway{Routes: []Route{{First: port, Last: port + 1, Target: 1}}, ListenHost: "127.0.0.1", Dir: &Directory{}}
	if err := g.Serve(context.Background()); err == nil {
		t.Fatal("Serve on a busy port succeeded")
	}
	l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(port))
	if err != nil {
		t.Fatalf("first port still open after the failure: %v", err)
	}
	l.Close()
}
