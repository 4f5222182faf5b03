// Package gateway publishes the replicas of a scaled service on host ports
// that match their names: port FIRST+i-1 of a route reaches the replica
// named PREFIX+i, whatever order the replicas started in.
//
// The lab needs it because Docker gives a scaled service's containers
// host ports from a range in the order they happen to start (node-2 could
// land on :3003), while each node takes its name from the first free data
// slot. The gateway is the only container that publishes the nodes' ports;
// it learns which address answers to which name from the nodes
// themselves (every replica of the service, found through DNS, reports its
// name on /health) and forwards each connection as plain TCP, so HTTP
// keep-alive, streaming bodies and any other protocol pass through
// unchanged.
package gateway

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/rs/zerolog"
)

// Route maps a range of listening ports to one port on every replica.
type Route struct {
	First, Last int // listening ports, inclusive
	Target      int // the port each replica listens on
	// HTTP routes answer a connection for a replica that is not running
	// with an HTTP 503 and a JSON error; other routes close it.
	HTTP bool
}

// ParseRoute reads "FIRST-LAST:TARGET" with an optional "/http" suffix,
// e.g. "3001-3009:3000/http".
func ParseRoute(s string) (Route, error) {
	spec, proto, _ := strings.Cut(s, "/")
	ports, target, ok := strings.Cut(spec, ":")
	first, last, ranged := strings.Cut(ports, "-")
	if !ranged {
		last = first
	}
	r := Route{HTTP: proto == "http"}
	var errs []error
	for _, p := range []struct {
		text string
		dst  *int
	}{{first, &r.First}, {last, &r.Last}, {target, &r.Target}} {
		n, err := strconv.Atoi(p.text)
		if err != nil || n < 1 || n > 65535 {
			errs = append(errs, fmt.Errorf("port %q", p.text))
		}
		*p.dst = n
	}
	switch {
	case !ok || (proto != "" && proto != "http"):
		return Route{}, fmt.Errorf("route %q: want FIRST-LAST:TARGET[/http]", s)
	case len(errs) > 0:
		return Route{}, fmt.Errorf("route %q: %w", s, errors.Join(errs...))
	case r.Last < r.First:
		return Route{}, fmt.Errorf("route %q: last port before first", s)
	}
	return r, nil
}

// Gateway listens on every port of its routes.
type Gateway struct {
	Routes []Route
	Prefix string // replica names are Prefix + 1, Prefix + 2, ...
	Dir    *Directory
	Log    zerolog.Logger
	// ListenHost is the address the ports are opened on ("" = all).
	ListenHost string

	wg    sync.WaitGroup
	mu    sync.Mutex
	conns map[net.Conn]struct{}
}

// Serve listens on every route's ports and forwards connections until ctx
// ends; then it closes the listeners and the open connections and returns
// once every forwarding goroutine has.
func (g *Gateway) Serve(ctx context.Context) error {
	var lns []net.Listener
	closeAll := func() {
		for _, ln := range lns {
			ln.Close()
		}
	}
	for _, r := range g.Routes {
		for p := r.First; p <= r.Last; p++ {
			ln, err := net.Listen("tcp", net.JoinHostPort(g.ListenHost, strconv.Itoa(p)))
			if err != nil {
				closeAll()
				return err
			}
			lns = append(lns, ln)
		}
	}
	g.mu.Lock()
	g.conns = map[net.Conn]struct{}{}
	g.mu.Unlock()
	i := 0
	for _, r := range g.Routes {
		for p := r.First; p <= r.Last; p++ {
			name := g.Prefix + strconv.Itoa(p-r.First+1)
			ln := lns[i]
			i++
			g.wg.Add(1)
			go func() { defer g.wg.Done(); g.accept(ctx, ln, r, name) }()
		}
	}
	<-ctx.Done()
	closeAll()
	g.mu.Lock()
	for c := range g.conns {
		c.Close()
	}
	g.mu.Unlock()
	g.wg.Wait()
	return nil
}

func (g *Gateway) accept(ctx context.Context, ln net.Listener, r Route, name string) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return // closed by Serve
		}
		if !g.track(c) {
			c.Close()
			return
		}
		g.wg.Add(1)
		go func() {
			defer g.wg.Done()
			defer g.untrack(c)
			g.forward(ctx, c, r, name)
		}()
	}
}

// track registers an open connection so Serve can close it; false once
// Serve is shutting down.
func (g *Gateway) track(c net.Conn) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.conns == nil {
		return false
	}
	g.conns[c] = struct{}{}
	return true
}

func (g *Gateway) untrack(c net.Conn) {
	c.Close()
	g.mu.Lock()
	delete(g.conns, c)
	g.mu.Unlock()
}

// dialTimeout bounds the connection to a replica; a replica that does not
// answer in this time is as good as absent.
const dialTimeout = 3 * time.Second

func (g *Gateway) forward(ctx context.Context, c net.Conn, r Route, name string) {
	up, err := g.dial(ctx, name, r.Target)
	if err != nil {
		g.Log.Debug().Err(err).Str("node", name).Msg("no replica for a connection")
		if r.HTTP {
			refuseHTTP(c, name, err, g.Dir.Names())
		}
		return
	}
	if !g.track(up) {
		up.Close()
		return
	}
	defer g.untrack(up)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); pipe(up, c) }()
	pipe(c, up)
	wg.Wait()
}

// dial connects to the replica called name, refreshing the directory once
// if the address it had is gone (the replica restarted with a new IP).
func (g *Gateway) dial(ctx context.Context, name string, port int) (net.Conn, error) {
	d := net.Dialer{Timeout: dialTimeout}
	for attempt := 0; ; attempt++ {
		host, err := g.Dir.Resolve(ctx, name, attempt > 0)
		if err != nil {
			return nil, err
		}
		up, err := d.DialContext(ctx, "tcp", net.JoinHostPort(host, strconv.Itoa(port)))
		if err == nil || attempt > 0 {
			return up, err
		}
	}
}

// pipe copies src to dst, then half-closes dst so the far side sees the
// end of the stream while the other direction goes on.
func pipe(dst, src net.Conn) {
	_, _ = io.Copy(dst, src)
	if tc, ok := dst.(interface{ CloseWrite() error }); ok {
		_ = tc.CloseWrite()
	} else {
		dst.Close()
	}
}

// refuseHTTP reads the client's request head (so closing does not reset
// the connection before the client reads the answer) and answers 503.
func refuseHTTP(c net.Conn, name string, why error, running []string) {
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := http.ReadRequest(bufio.NewReader(io.LimitReader(c, 64<<10))); err != nil {
		return
	}
	list := "none"
	if len(running) > 0 {
		list = strings.Join(running, ", ")
	}
	body, _ := json.Marshal(map[string]string{
		"error": fmt.Sprintf("%s is not running (%v); running: %s", name, why, list),
	})
	fmt.Fprintf(c, "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s\n",
		len(body)+1, body)
}

// Mapping is one published replica: the host port that reaches it.
type Mapping struct {
	Name string `json:"name"`
	Port int    `json:"port"`
	Addr string `json:"addr"`
}

// Status is the gateway's own GET /health: it is up, and which replicas
// its first route reaches on which port (refreshed for the request).
type Status struct {
	Status  string    `json:"status"`
	Gateway bool      `json:"gateway"`
	Nodes   []Mapping `json:"nodes"`
	Error   string    `json:"error,omitempty"`
}

// StatusHandler serves GET /health for the gateway's container health check
// and for `make ps`.
func (g *Gateway) StatusHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /health", func(w http.ResponseWriter, r *http.Request) {
		st := Status{Status: "ok", Gateway: true, Nodes: []Mapping{}}
		if err := g.Dir.Refresh(r.Context()); err != nil {
			st.Error = err.Error()
		}
		if len(g.Routes) > 0 {
			rt := g.Routes[0]
			for p := rt.First; p <= rt.Last; p++ {
				name := g.Prefix + strconv.Itoa(p-rt.First+1)
				if host, err := g.Dir.Resolve(r.Context(), name, false); err == nil {
					st.Nodes = append(st.Nodes, Mapping{Name: name, Port: p, Addr: net.JoinHostPort(host, strconv.Itoa(rt.Target))})
				}
			}
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(st)
	})
	return mux
}
