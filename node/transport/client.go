// Package transport is the node-to-node HTTP client: pooled keep-alive
// connections, the cluster token, and the wire encoding of records. It
// implements replication.Peers.
package transport

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
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/goblocks/goblocks/node/auth"
	"github.com/goblocks/goblocks/node/hlc"
	"github.com/goblocks/goblocks/node/storage"
	"github.com/goblocks/goblocks/node/wire"
)

// ErrRemote wraps an error status returned by a peer.
var ErrRemote = errors.New("transport: peer error")

// Options configure a Client.
type Options struct {
	// Token is sent as "Authorization: Bearer <Token>" once it is known.
	Token *auth.Token
	// MaxBlockSize bounds the payload read from a peer.
	MaxBlockSize int
	// Propagator, when set, carries the caller's trace to the peer. Calls
	// made under a sampled span then travel in requests of their own
	// instead of shared batches, so the replica's span joins that trace;
	// unsampled calls keep batching.
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

	stats      struct{ batches, calls atomic.Int64 }
	pipes      pipelines
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
	c := &Client{http: &http.Client{Transport: tr}, scheme: scheme, token: o.Token, max: o.MaxBlockSize, prop: o.Propagator}
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
	c.pipes.wg.Wait()
	c.http.CloseIdleConnections()
}

func (c *Client) blockURL(addr, id string) string {
	return c.scheme + addr + "/internal/block/" + url.PathEscape(id)
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
	if c.traced(ctx) {
		return c.ApplyOne(ctx, addr, id, rec)
	}
	r, err := c.submit(ctx, addr, kindApply, &call{id: id, rec: rec})
	return r.held, err
}

// Fetch returns the peer's local record of id; storage.ErrNotFound when it
// holds none. Concurrent calls to one peer share batch requests.
func (c *Client) Fetch(ctx context.Context, addr, id string) (storage.Record, error) {
	if c.traced(ctx) {
		return c.FetchOne(ctx, addr, id)
	}
	r, err := c.submit(ctx, addr, kindFetch, &call{id: id})
	return r.rec, err
}

// traced reports whether a call belongs to a sampled trace that the peer
// should continue.
func (c *Client) traced(ctx context.Context) bool {
	return c.prop != nil && trace.SpanContextFromContext(ctx).IsSampled()
}

// ApplyOne sends rec in a request of its own (PUT or DELETE
// /internal/block/{id}) and returns what Apply returns.
func (c *Client) ApplyOne(ctx context.Context, addr, id string, rec storage.Record) (hlc.Version, error) {
	method := http.MethodPut
	if rec.Tombstone {
		method = http.MethodDelete
	}
	req, err := http.NewRequestWithContext(ctx, method, c.blockURL(addr, id), bytes.NewReader(rec.Data))
	if err != nil {
		return hlc.Version{}, err
	}
	wire.SetRecordHeaders(req.Header, rec.Meta())
	req.Header.Set("Content-Type", "application/octet-stream")
	resp, err := c.do(req)
	if err != nil {
		return hlc.Version{}, err
	}
	defer drain(resp)
	if resp.StatusCode/100 != 2 {
		return hlc.Version{}, remoteError(resp)
	}
	if resp.Header.Get(wire.HeaderApplied) != "false" {
		return rec.Version, nil
	}
	held, err := hlc.ParseVersion(resp.Header.Get(wire.HeaderHeld))
	if err != nil {
		// An unreadable copy there: not the write, not a newer one.
		return hlc.Version{}, nil
	}
	return held, nil
}

// FetchOne reads the peer's copy in a request of its own (GET
// /internal/block/{id}).
func (c *Client) FetchOne(ctx context.Context, addr, id string) (storage.Record, error) {
	return c.get(ctx, http.MethodGet, addr, id)
}

// FetchMeta returns the peer's record metadata without the payload:
// the version query before a write and the digest replies of a read.
// Concurrent calls to one peer share batch requests.
func (c *Client) FetchMeta(ctx context.Context, addr, id string) (storage.Meta, error) {
	if c.traced(ctx) {
		return c.FetchMetaOne(ctx, addr, id)
	}
	r, err := c.submit(ctx, addr, kindMeta, &call{id: id})
	return r.meta, err
}

// FetchDigest returns the peer's record metadata after the peer checked
// its payload against the checksum: a read's digest reply. Concurrent
// calls to one peer share batch requests.
func (c *Client) FetchDigest(ctx context.Context, addr, id string) (storage.Meta, error) {
	if c.traced(ctx) {
		rec, err := c.FetchOne(ctx, addr, id)
		return rec.Meta(), err
	}
	r, err := c.submit(ctx, addr, kindDigest, &call{id: id})
	return r.meta, err
}

// FetchMetaOne reads the peer's metadata in a request of its own (HEAD
// /internal/block/{id}).
func (c *Client) FetchMetaOne(ctx context.Context, addr, id string) (storage.Meta, error) {
	rec, err := c.get(ctx, http.MethodHead, addr, id)
	return rec.Meta(), err
}

func (c *Client) get(ctx context.Context, method, addr, id string) (storage.Record, error) {
	var rec storage.Record
	req, err := http.NewRequestWithContext(ctx, method, c.blockURL(addr, id), nil)
	if err != nil {
		return rec, err
	}
	resp, err := c.do(req)
	if err != nil {
		return rec, err
	}
	defer drain(resp)
	if resp.StatusCode == http.StatusNotFound && resp.Header.Get(wire.HeaderVersion) == "" {
		return rec, storage.ErrNotFound
	}
	if resp.StatusCode != http.StatusOK {
		return rec, remoteError(resp)
	}
	meta, err := wire.ParseRecordHeaders(resp.Header)
	if err != nil {
		return rec, err
	}
	rec = storage.Record{Version: meta.Version, Checksum: meta.Checksum, Tombstone: meta.Tombstone, StaleSince: meta.StaleSince}
	if method == http.MethodHead || meta.Tombstone {
		return rec, nil
	}
	data, err := io.ReadAll(io.LimitReader(resp.Body, int64(c.max)+1))
	if err != nil {
		return rec, err
	}
	if len(data) > c.max {
		return rec, fmt.Errorf("%w: %s sent more than %d bytes for %q", ErrRemote, addr, c.max, id)
	}
	if storage.Checksum(data) != meta.Checksum {
		return rec, fmt.Errorf("%w: %s sent %q with a bad checksum", storage.ErrCorrupt, addr, id)
	}
	rec.Data = data
	return rec, nil
}

// remoteError turns a peer's JSON error body into an error. A peer that
// reports its own copy corrupt yields an error wrapping storage.ErrCorrupt
// so the coordinator repairs it.
func remoteError(resp *http.Response) error {
	var body struct {
		Error string `json:"error"`
		Code  string `json:"code"`
	}
	_ = json.NewDecoder(io.LimitReader(resp.Body, 4096)).Decode(&body)
	if body.Code == "corrupt" {
		return fmt.Errorf("%w: peer: %s", storage.ErrCorrupt, body.Error)
	}
	return fmt.Errorf("%w: %s %s: %d %s: %s", ErrRemote, resp.Request.Method, resp.Request.URL.Path, resp.StatusCode, body.Code, body.Error)
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
