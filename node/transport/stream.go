package transport

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/goblocks/goblocks/node/wire"
)

// Batch requests travel on peer streams (wire.PathStream): one persistent
// connection per peer and class, opened by an HTTP upgrade that carries
// the cluster token, then request and response frames, pipelined and
// answered in any order. Compared with one HTTP request per batch, a
// batch costs no HTTP parsing or headers on either side and no pooled
// connection per batch in flight (the peer still routes each frame
// through its handler, for the same checks). A peer that does not know
// the endpoint (an older version, during a rolling upgrade) gets HTTP
// batches, and is asked again after streamRetryAfter.

const (
	// streamIdle closes a stream that carried nothing for this long; the
	// next call opens a new one. A stream with calls pending and no
	// answer for as long fails them: the peer stalled.
	streamIdle = 30 * time.Second
	// streamDialTimeout bounds opening a stream: connect, TLS, upgrade.
	streamDialTimeout = 2 * time.Second
	// streamWriteTimeout bounds writing one request to a peer that stopped
	// reading.
	streamWriteTimeout = 10 * time.Second
	// streamRetryAfter is how long a peer without streams gets HTTP
	// batches before it is asked again.
	streamRetryAfter = time.Minute
)

// streamClass separates bulk transfers from the request path, so a
// migration's megabyte batches do not queue in front of a client's
// writes on one connection.
type streamClass uint8

const (
	classRequests streamClass = iota
	classBulk
)

type streamKey struct {
	addr  string
	class streamClass
}

// errNoStreams: the peer answered the upgrade with 404.
var errNoStreams = errors.New("transport: peer has no stream endpoint")

// errStreamGone: the stream closed before the request was written, or
// closed as idle just as it was written (an idle close sees no calls
// pending). Every op is idempotent, so a new stream may carry it again.
var errStreamGone = errors.New("transport: peer stream closed")

type streamSet struct {
	mu     sync.Mutex
	byKey  map[streamKey]*streamSlot
	closed bool
	// idle is streamIdle; tests shorten it.
	idle time.Duration
}

// streamSlot holds the stream to one peer and class, or the dial under
// way, or the time until which the peer gets HTTP batches.
type streamSlot struct {
	s        *peerStream
	dialing  chan struct{} // closed when the dial ends
	dialErr  error
	httpOnly time.Time
}

// openStream returns a live stream to addr, dialing one if needed; nil
// and no error when the peer gets HTTP batches.
func (c *Client) openStream(ctx context.Context, addr string, class streamClass) (*peerStream, error) {
	key := streamKey{addr, class}
	for {
		c.streams.mu.Lock()
		if c.streams.closed {
			c.streams.mu.Unlock()
			return nil, errClientClosed
		}
		if c.streams.byKey == nil {
			c.streams.byKey = map[streamKey]*streamSlot{}
		}
		slot := c.streams.byKey[key]
		if slot == nil {
			slot = &streamSlot{}
			c.streams.byKey[key] = slot
		}
		if time.Now().Before(slot.httpOnly) {
			c.streams.mu.Unlock()
			return nil, nil
		}
		if s := slot.s; s != nil && !s.isBroken() {
			c.streams.mu.Unlock()
			return s, nil
		}
		dialing := slot.dialing
		if dialing == nil {
			dialing = make(chan struct{})
			slot.s, slot.dialing, slot.dialErr = nil, dialing, nil
			c.pipes.wg.Add(1)
			go c.dialStream(key, slot, dialing)
		}
		c.streams.mu.Unlock()
		select {
		case <-dialing:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		c.streams.mu.Lock()
		err := slot.dialErr
		c.streams.mu.Unlock()
		if err != nil {
			return nil, err
		}
		// Dialed (or marked HTTP only): the loop returns it.
	}
}

// dialStream opens a stream for slot. It runs detached from the call that
// started it, so a call that gives up does not fail the others waiting.
func (c *Client) dialStream(key streamKey, slot *streamSlot, dialing chan struct{}) {
	defer c.pipes.wg.Done()
	ctx, cancel := context.WithTimeout(c.closingCtx, streamDialTimeout)
	defer cancel()
	s, err := c.dial(ctx, key.addr)
	c.streams.mu.Lock()
	defer c.streams.mu.Unlock()
	switch {
	case c.streams.closed && s != nil:
		s.fail(errClientClosed)
		err = errClientClosed
	case errors.Is(err, errNoStreams):
		slot.httpOnly, err = time.Now().Add(streamRetryAfter), nil
	case err == nil:
		slot.s = s
		c.pipes.wg.Add(1)
		go func() {
			defer c.pipes.wg.Done()
			s.readLoop(c.streams.idle)
			// A peer that left the cluster leaves no slot behind.
			c.streams.mu.Lock()
			if cur := c.streams.byKey[key]; cur == slot && slot.s == s && slot.dialing == nil {
				delete(c.streams.byKey, key)
			}
			c.streams.mu.Unlock()
		}()
	}
	slot.dialErr, slot.dialing = err, nil
	close(dialing)
}

// dial connects to addr and upgrades the connection to a peer stream.
func (c *Client) dial(ctx context.Context, addr string) (*peerStream, error) {
	conn, err := (&net.Dialer{KeepAlive: 30 * time.Second}).DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	if c.tls != nil {
		cfg := c.tls.Clone()
		if cfg.ServerName == "" {
			cfg.ServerName, _, _ = net.SplitHostPort(addr)
		}
		tc := tls.Client(conn, cfg)
		if err := tc.HandshakeContext(ctx); err != nil {
			conn.Close()
			return nil, err
		}
		conn = tc
	}
	if d, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(d)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.scheme+addr+wire.PathStream, nil)
	if err != nil {
		conn.Close()
		return nil, err
	}
	req.Header.Set("Connection", "Upgrade")
	req.Header.Set("Upgrade", wire.StreamProtocol)
	c.token.Authorize(req.Header)
	br := bufio.NewReaderSize(conn, 64<<10)
	resp, err := func() (*http.Response, error) {
		if err := req.Write(conn); err != nil {
			return nil, err
		}
		return http.ReadResponse(br, req)
	}()
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("opening a stream to %s: %w", addr, err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		defer conn.Close()
		defer drain(resp)
		if resp.StatusCode == http.StatusNotFound {
			return nil, errNoStreams
		}
		return nil, remoteError(resp)
	}
	if !strings.EqualFold(resp.Header.Get("Upgrade"), wire.StreamProtocol) {
		conn.Close()
		return nil, fmt.Errorf("%w: %s upgraded to %q, not %s", ErrRemote, addr, resp.Header.Get("Upgrade"), wire.StreamProtocol)
	}
	_ = conn.SetDeadline(time.Time{})
	return &peerStream{addr: addr, conn: conn, r: br, w: bufio.NewWriterSize(conn, 64<<10),
		maxBody: wire.MaxStreamBody(c.max), pending: map[uint32]chan wire.StreamResponse{}, done: make(chan struct{})}, nil
}

// peerStream is one upgraded connection: calls write request frames under
// wmu, readLoop hands each response to the call waiting for its id.
type peerStream struct {
	addr    string
	conn    net.Conn
	r       *bufio.Reader
	maxBody int

	// writers counts calls waiting for wmu: the last one flushes, so
	// requests made together leave in one write.
	writers atomic.Int32
	wmu     sync.Mutex
	w       *bufio.Writer

	mu      sync.Mutex
	pending map[uint32]chan wire.StreamResponse
	nextID  uint32
	err     error         // why the stream ended; nil while it is live
	done    chan struct{} // closed when err is set
}

func (s *peerStream) isBroken() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err != nil
}

// fail ends the stream: pending calls get err, later ones errStreamGone.
func (s *peerStream) fail(err error) {
	s.mu.Lock()
	if s.err != nil {
		s.mu.Unlock()
		return
	}
	s.err = err
	close(s.done)
	s.mu.Unlock()
	_ = s.conn.Close()
}

// call sends one request and waits for its response; errStreamGone says
// it may be sent again on a new stream.
func (s *peerStream) call(ctx context.Context, q wire.StreamRequest) (wire.StreamResponse, error) {
	ch := make(chan wire.StreamResponse, 1)
	s.mu.Lock()
	if s.err != nil {
		s.mu.Unlock()
		return wire.StreamResponse{}, errStreamGone
	}
	s.nextID++
	q.ID = s.nextID
	s.pending[q.ID] = ch
	s.mu.Unlock()
	head := wire.AppendStreamRequestHead(make([]byte, 0, 64), q)
	s.writers.Add(1)
	s.wmu.Lock()
	last := s.writers.Add(-1) == 0
	_ = s.conn.SetWriteDeadline(time.Now().Add(streamWriteTimeout))
	_, err := s.w.Write(head)
	if err == nil {
		_, err = s.w.Write(q.Body) // a body larger than the buffer goes straight to the socket
	}
	if err == nil && last {
		err = s.w.Flush()
	}
	s.wmu.Unlock()
	if err != nil {
		err = fmt.Errorf("writing to the stream to %s: %w", s.addr, err)
		s.fail(err)
		return wire.StreamResponse{}, err
	}
	select {
	case resp := <-ch:
		return resp, nil
	case <-s.done:
		select {
		case resp := <-ch: // answered just before the end
			return resp, nil
		default:
		}
		s.mu.Lock()
		err := s.err
		s.mu.Unlock()
		return wire.StreamResponse{}, err
	case <-ctx.Done():
		s.mu.Lock()
		delete(s.pending, q.ID)
		s.mu.Unlock()
		return wire.StreamResponse{}, ctx.Err()
	}
}

// readLoop delivers responses until the stream fails or stays idle for
// idle: with nothing pending it simply closes; with calls pending, they
// fail (the peer stalled).
func (s *peerStream) readLoop(idle time.Duration) {
	for {
		_ = s.conn.SetReadDeadline(time.Now().Add(idle))
		resp, err := wire.ReadStreamResponse(s.r, s.maxBody)
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				s.mu.Lock()
				waiting := len(s.pending)
				s.mu.Unlock()
				if waiting > 0 {
					err = fmt.Errorf("%w: %s answered nothing for %s with %d requests pending", ErrRemote, s.addr, idle, waiting)
				} else {
					err = errStreamGone
				}
			} else {
				err = fmt.Errorf("stream to %s: %w", s.addr, err)
			}
			s.fail(err)
			return
		}
		s.mu.Lock()
		ch := s.pending[resp.ID]
		delete(s.pending, resp.ID)
		s.mu.Unlock()
		if ch != nil {
			ch <- resp // buffered; a call that gave up left no channel
		}
	}
}

// closeStreams ends every stream (Client.Close).
func (c *Client) closeStreams() {
	c.streams.mu.Lock()
	c.streams.closed = true
	var open []*peerStream
	for _, slot := range c.streams.byKey {
		if slot.s != nil {
			open = append(open, slot.s)
		}
	}
	c.streams.mu.Unlock()
	for _, s := range open {
		s.fail(errClientClosed)
	}
}
