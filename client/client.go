// Package client is the Go client of a goblocks cluster: put, get and
// delete fixed-size blocks through any node, and read the nodes' health,
// cluster status and ring.
//
// Any node coordinates a request, so a Client spreads requests over the
// nodes it knows (round-robin) and, when a node cannot be reached or
// answers 5xx (503: not enough replicas), retries on the next one. A 4xx
// answer is final: every node would say the same. Errors unwrap to the
// sentinels ErrBadRequest, ErrNotFound, ErrConflict and ErrUnavailable and
// can be inspected further as *Error.
//
// The package depends on nothing but the standard library and the JSON the
// nodes serve; it does not import the node's packages.
package client

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
	"time"
)

// DefaultBlockSize is the size of every block unless the cluster was
// configured otherwise.
const DefaultBlockSize = 4096

// DefaultTimeout bounds one attempt on one node. It is above a node's
// default RequestTimeout (5s), so a node that gives up on its replicas
// can still answer 503 before the client stops waiting.
const DefaultTimeout = 10 * time.Second

// maxResponse bounds how much of an answer is read: a block, or the JSON of
// the admin endpoints (a ring of 100 nodes x 256 vnodes is ~1 MiB).
const maxResponse = 32 << 20

// Client talks to a goblocks cluster. It is safe for concurrent use; its
// connections are pooled and kept alive, so share one Client per cluster.
type Client struct {
	nodes []string // base URLs, e.g. http://127.0.0.1:3001
	addrs []string // as given to New, for errors
	hc    *http.Client
	own   *http.Transport // nil when the caller supplied the HTTP client
	o     options
	next  *atomic.Uint64 // round-robin start of the next request
	err   error          // set by Node for an invalid address
}

type options struct {
	hc          *http.Client
	token       string
	timeout     time.Duration
	retries     int // -1: one attempt per node
	consistency string
	blockSize   int
	tls         *tls.Config
}

// Option configures a Client.
type Option func(*options)

// WithHTTPClient makes the Client send its requests with hc instead of
// its own pooled keep-alive transport.
func WithHTTPClient(hc *http.Client) Option { return func(o *options) { o.hc = hc } }

// WithToken sends "Authorization: Bearer token" with every request: the
// nodes' AdminToken, which /admin/* (status, ring) and /metrics require
// when it is set. The block API needs none.
func WithToken(token string) Option { return func(o *options) { o.token = token } }

// WithTLS talks HTTPS to the nodes (clusters run with mutual TLS) and
// verifies their certificates with cfg; addresses without a scheme then
// mean https://. Clients need no certificate of their own.
func WithTLS(cfg *tls.Config) Option { return func(o *options) { o.tls = cfg } }

// WithTimeout bounds each attempt on one node (default DefaultTimeout; 0
// means no bound but the context's). The whole call is bounded by its
// context.
func WithTimeout(d time.Duration) Option { return func(o *options) { o.timeout = d } }

// WithRetries sets how many more attempts follow a failed one (each on the
// next node, cycling through the list with a short backoff once every node
// failed). The default, -1, tries each node once.
func WithRetries(n int) Option { return func(o *options) { o.retries = n } }

// WithConsistency asks for consistency "one", "quorum" or "all" on every
// block request instead of the nodes' configured defaults.
func WithConsistency(c string) Option { return func(o *options) { o.consistency = c } }

// WithBlockSize sets the cluster's block size (default DefaultBlockSize),
// so Put can refuse a wrong-sized block without sending it.
func WithBlockSize(n int) Option { return func(o *options) { o.blockSize = n } }

// New returns a Client for the nodes at addrs ("host:port" or
// "http://host:port"). It does not contact them.
func New(addrs []string, opts ...Option) (*Client, error) {
	o := options{timeout: DefaultTimeout, retries: -1, blockSize: DefaultBlockSize}
	for _, opt := range opts {
		opt(&o)
	}
	switch {
	case len(addrs) == 0:
		return nil, errors.New("goblocks: no node addresses")
	case o.timeout < 0:
		return nil, fmt.Errorf("goblocks: negative timeout %v", o.timeout)
	case o.retries < -1:
		return nil, fmt.Errorf("goblocks: retries %d, want -1 or more", o.retries)
	case o.blockSize <= 0:
		return nil, fmt.Errorf("goblocks: block size %d, want > 0", o.blockSize)
	}
	switch o.consistency {
	case "", "one", "quorum", "all":
	default:
		return nil, fmt.Errorf("goblocks: consistency %q, want one, quorum or all", o.consistency)
	}
	c := &Client{o: o, next: new(atomic.Uint64), hc: o.hc}
	for _, a := range addrs {
		base, err := baseURL(a, o.tls != nil)
		if err != nil {
			return nil, err
		}
		c.nodes = append(c.nodes, base)
		c.addrs = append(c.addrs, a)
	}
	if c.hc == nil {
		c.own = &http.Transport{
			// No proxy: the nodes are addressed directly.
			DialContext:         (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
			MaxIdleConns:        512,
			MaxIdleConnsPerHost: 128, // a benchmark's workers each keep one
			IdleConnTimeout:     90 * time.Second,
			TLSClientConfig:     o.tls,
		}
		c.hc = &http.Client{Transport: c.own}
	}
	return c, nil
}

func baseURL(addr string, https bool) (string, error) {
	s := strings.TrimRight(strings.TrimSpace(addr), "/")
	if !strings.Contains(s, "://") {
		if https {
			s = "https://" + s
		} else {
			s = "http://" + s
		}
	}
	u, err := url.Parse(s)
	if err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
		return "", fmt.Errorf("goblocks: bad node address %q, want host:port", addr)
	}
	return s, nil
}

// Nodes returns the node addresses as given to New.
func (c *Client) Nodes() []string { return append([]string(nil), c.addrs...) }

// BlockSize is the block size Put expects.
func (c *Client) BlockSize() int { return c.o.blockSize }

// Node returns a Client that sends every request to addr only (no retry
// on other nodes), sharing c's connections and options. Use it to ask one
// particular node.
func (c *Client) Node(addr string) *Client {
	n := *c
	n.own = nil // Close of the copy must not close the shared pool
	n.next = new(atomic.Uint64)
	n.o.retries = 0
	base, err := baseURL(addr, c.o.tls != nil)
	n.nodes, n.addrs, n.err = []string{base}, []string{addr}, err
	return &n
}

// Close releases idle connections. The Client stays usable.
func (c *Client) Close() {
	if c.own != nil {
		c.own.CloseIdleConnections()
	}
}

// Put stores data, which must be exactly BlockSize bytes, as block id and
// returns the version the cluster gave it.
func (c *Client) Put(ctx context.Context, id string, data []byte) (string, error) {
	if len(data) != c.o.blockSize {
		return "", &Error{Op: http.MethodPut, ID: id, Status: http.StatusBadRequest, Code: "bad_size",
			Message: fmt.Sprintf("%d bytes, want exactly %d", len(data), c.o.blockSize)}
	}
	resp, err := c.do(ctx, http.MethodPut, id, data)
	if err != nil {
		return "", err
	}
	if v := resp.header.Get("X-Goblocks-Version"); v != "" {
		return v, nil
	}
	var body struct {
		Version string `json:"version"`
	}
	_ = json.Unmarshal(resp.body, &body)
	return body.Version, nil
}

// Get returns the payload of block id; ErrNotFound when there is none.
func (c *Client) Get(ctx context.Context, id string) ([]byte, error) {
	resp, err := c.do(ctx, http.MethodGet, id, nil)
	if err != nil {
		return nil, err
	}
	return resp.body, nil
}

// Delete removes block id. Deleting a block that does not exist succeeds.
func (c *Client) Delete(ctx context.Context, id string) error {
	_, err := c.do(ctx, http.MethodDelete, id, nil)
	return err
}

func (c *Client) do(ctx context.Context, method, id string, body []byte) (*response, error) {
	if id == "" {
		// "/block/" would be a missing route (404), not a bad id.
		return nil, &Error{Op: method, ID: id, Status: http.StatusBadRequest, Code: "invalid_id", Message: "empty block id"}
	}
	path := "/block/" + url.PathEscape(id)
	if c.o.consistency != "" {
		path += "?consistency=" + c.o.consistency
	}
	return c.roundTrip(ctx, method, id, path, body)
}

// response is a successful answer, read whole.
type response struct {
	status int
	header http.Header
	body   []byte
}

// roundTrip sends the request to the nodes in turn until one answers
// below 300 or with a final (4xx) error, the attempts run out or ctx ends.
func (c *Client) roundTrip(ctx context.Context, method, id, path string, body []byte) (*response, error) {
	if c.err != nil {
		return nil, c.err
	}
	n := len(c.nodes)
	attempts := n
	if c.o.retries >= 0 {
		attempts = 1 + c.o.retries
	}
	start := int(c.next.Add(1) - 1)
	var last *Error
	for i := range attempts {
		node := (start + i) % n
		if i > 0 && i%n == 0 {
			// Every node failed once: give the cluster a moment (a
			// migration swap, a restarting node) before the next cycle.
			if err := sleep(ctx, backoff(i/n)); err != nil {
				return nil, &Error{Op: method, ID: id, Node: last.Node, Err: err}
			}
		}
		resp, err := c.once(ctx, method, c.nodes[node], path, body)
		if err == nil && resp.status < 300 {
			return resp, nil
		}
		last = &Error{Op: method, ID: id, Node: c.addrs[node], Err: err}
		if err == nil {
			last.Status = resp.status
			last.Code, last.Message = errorBody(resp.body)
		}
		if ctx.Err() != nil {
			last.Status, last.Err = 0, ctx.Err()
			return nil, last
		}
		if !retryable(last.Status) {
			return nil, last
		}
	}
	return nil, last
}

func backoff(cycle int) time.Duration {
	d := 50 * time.Millisecond << min(cycle-1, 5)
	return min(d, time.Second)
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// once is one attempt on one node; any HTTP answer is a response.
func (c *Client) once(ctx context.Context, method, base, path string, body []byte) (*response, error) {
	if c.o.timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, c.o.timeout)
		defer cancel()
	}
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, base+path, rd)
	if err != nil {
		return nil, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/octet-stream")
	}
	if c.o.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.o.token)
	}
	req.Header.Set("User-Agent", "goblocks-client")
	resp, err := c.hc.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxResponse))
	if err != nil {
		return nil, err
	}
	return &response{status: resp.StatusCode, header: resp.Header, body: b}, nil
}

// errorBody reads the nodes' {"error", "code"} body; anything else becomes
// the message as text.
func errorBody(b []byte) (code, msg string) {
	var e struct {
		Error string `json:"error"`
		Code  string `json:"code"`
	}
	if json.Unmarshal(b, &e) == nil && (e.Error != "" || e.Code != "") {
		return e.Code, e.Error
	}
	s := strings.TrimSpace(string(b))
	if len(s) > 200 {
		s = s[:200] + "..."
	}
	return "", s
}
