// Package transport is the node-to-node client. Single-record calls of
// concurrent requests are multiplexed into batches per peer (pipeline.go);
// batches travel as frames on a persistent stream per peer (stream.go), or
// as HTTP requests to a peer without streams; anti-entropy digests are
// HTTP requests. Every call carries the cluster token, records carry
// their version and checksum (package wire). It implements
// replication.Peers.
package transport

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/goblocks/goblocks/node/auth"
	"github.com/goblocks/goblocks/node/hlc"
	"github.com/goblocks/goblocks/node/storage"
)

// ErrRemote wraps an error status returned by a peer.
var ErrRemote = errors.New("transport: peer error")

// Options configure a Client.
type Options struct {
	// Token is sent as "Authorization: Bearer <Token>" once it is known.
	Token *auth.Token
	// MaxBlockSize bounds the payload read from a peer.
	MaxBlockSize int
	// Propagator, when set, carries the caller's trace to the peer: a
	// batch carries the trace contexts of its sampled calls, and the
	// replica's span continues the first (linked to the others).
	Propagator propagation.TextMapPropagator
	// TLS, when set, dials peers over HTTPS with it (mutual TLS: it
	// carries this node's certificate and the cluster's CA).
	TLS *tls.Config
}

// Client calls other nodes' /internal endpoints. It is safe for concurrent
// use and keeps connections open between calls.
type Client struct {
	http   *http.Client
	scheme string // "http://" or "https://"
	token  *auth.Token
	max    int
	prop   propagation.TextMapPropagator

	tls        *tls.Config
	stats      struct{ batches, calls, streamed atomic.Int64 }
	pipes      pipelines
	streams    streamSet
	closingCtx context.Context
	closeCtx   context.CancelFunc
}

// NewClient returns a client with a connection pool sized for a
// coordinator that fans out to a few peers at high concurrency.
func NewClient(o Options) *Client {
	tr := &http.Transport{
		DialContext:         (&net.Dialer{Timeout: 2 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:        1024,
		MaxIdleConnsPerHost: 256, // one idle connection per concurrent request to a peer: no reconnect churn
		IdleConnTimeout:     90 * time.Second,
		DisableCompression:  true, // blocks are opaque; compressing them costs CPU for nothing
		ForceAttemptHTTP2:   false,
	}
	if o.MaxBlockSize <= 0 {
		o.MaxBlockSize = 4096
	}
	scheme := "http://"
	if o.TLS != nil {
		tr.TLSClientConfig = o.TLS
		scheme = "https://"
	}
	c := &Client{http: &http.Client{Transport: tr}, scheme: scheme, token: o.Token, max: o.MaxBlockSize, prop: o.Propagator, tls: o.TLS}
	c.streams.idle = streamIdle
	c.pipes.closing = make(chan struct{})
	c.pipes.idle = pipelineIdle
	c.closingCtx, c.closeCtx = context.WithCancel(context.Background())
	return c
}

// Close stops the write and read multiplexers and drops idle connections.
// Calls not yet sent, and calls made after Close, fail with an error
// saying the client is closed; batch requests in flight are cancelled.
// Close returns once every goroutine the client started has exited.
func (c *Client) Close() {
	c.pipes.mu.Lock()
	if !c.pipes.closed {
		c.pipes.closed = true
		close(c.pipes.closing)
		c.closeCtx()
	}
	c.pipes.mu.Unlock()
	c.closeStreams()
	c.pipes.wg.Wait()
	c.http.CloseIdleConnections()
}

func (c *Client) do(req *http.Request) (*http.Response, error) {
	if c.prop != nil {
		c.prop.Inject(req.Context(), propagation.HeaderCarrier(req.Header))
	}
	c.token.Authorize(req.Header)
	return c.http.Do(req)
}

// Apply sends rec to the peer, which stores it if newer, and returns the
// version the peer holds afterwards: rec.Version when it stored it (or
// already held it), a newer one when it refused it. Concurrent calls to
// one peer share batch requests.
func (c *Client) Apply(ctx context.Context, addr, id string, rec storage.Record) (hlc.Version, error) {
	r, err := c.submit(ctx, addr, kindApply, &call{id: id, rec: rec})
	return r.held, err
}

// Fetch returns the peer's local record of id; storage.ErrNotFound when it
// holds none. Concurrent calls to one peer share batch requests.
func (c *Client) Fetch(ctx context.Context, addr, id string) (storage.Record, error) {
	r, err := c.submit(ctx, addr, kindFetch, &call{id: id})
	return r.rec, err
}

// traceOf returns the trace context of a call that belongs to a sampled
// trace, which the peer's span continues; nil otherwise.
func (c *Client) traceOf(ctx context.Context) map[string]string {
	if c.prop == nil || !trace.SpanContextFromContext(ctx).IsSampled() {
		return nil
	}
	carrier := propagation.MapCarrier{}
	c.prop.Inject(ctx, carrier)
	return carrier
}

// FetchMeta returns the peer's record metadata without the payload:
// the version query before a write and the digest replies of a read.
// Concurrent calls to one peer share batch requests.
func (c *Client) FetchMeta(ctx context.Context, addr, id string) (storage.Meta, error) {
	r, err := c.submit(ctx, addr, kindMeta, &call{id: id})
	return r.meta, err
}

// FetchDigest returns the peer's record metadata after the peer checked
// its payload against the checksum: a read's digest reply. Concurrent
// calls to one peer share batch requests.
func (c *Client) FetchDigest(ctx context.Context, addr, id string) (storage.Meta, error) {
	r, err := c.submit(ctx, addr, kindDigest, &call{id: id})
	return r.meta, err
}

// remoteError turns a peer's JSON error body into an error. A peer that
// reports its own copy corrupt yields an error wrapping storage.ErrCorrupt
// so the coordinator repairs it.
func remoteError(resp *http.Response) error {
	return remoteErrorFrom(resp.Request.Method+" "+resp.Request.URL.Path, resp.StatusCode, resp.Body)
}

// remoteErrorFrom turns an error answer to the request what (method and
// path) into an error, as remoteError does.
func remoteErrorFrom(what string, status int, body io.Reader) error {
	var e struct {
		Error string `json:"error"`
		Code  string `json:"code"`
	}
	_ = json.NewDecoder(io.LimitReader(body, 4096)).Decode(&e)
	if e.Code == "corrupt" {
		return fmt.Errorf("%w: peer: %s", storage.ErrCorrupt, e.Error)
	}
	return fmt.Errorf("%w: %s: %d %s: %s", ErrRemote, what, status, e.Code, e.Error)
}

// drain reads what is left of a small response so the connection goes back
// to the pool.
func drain(resp *http.Response) {
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
}

// BatchStats returns how many multiplexed batch requests were sent and how
// many calls they carried.
func (c *Client) BatchStats() (batches, calls int64) {
	return c.stats.batches.Load(), c.stats.calls.Load()
}
