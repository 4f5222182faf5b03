package api

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	"golang.org/x/net/http/httpguts"

	"github.com/goblocks/goblocks/node/wire"
)

// streamConcurrency bounds the requests of one peer stream handled at
// once (its workers); past it the server stops reading the stream, and
// the peer's writes wait in TCP's buffers (backpressure, not refusal). A
// peer's pipelines keep at most two batches in flight per kind.
const streamConcurrency = 16

// streamWriteTimeout bounds how long a response may wait for a peer that
// stopped reading.
const streamWriteTimeout = 10 * time.Second

// streams tracks the upgraded connections, which http.Server.Shutdown
// does not know about.
type streams struct {
	mu     sync.Mutex
	conns  map[*streamConn]struct{}
	closed bool
}

// Handler is the node's HTTP handler. CloseStreams ends its peer streams;
// NewServer arranges for Shutdown to call it.
type Handler struct {
	http.Handler
	s *server
}

// CloseStreams stops reading new requests on every peer stream, lets the
// requests being handled answer, and closes the connections. Later
// upgrades are refused.
func (h *Handler) CloseStreams() {
	st := &h.s.streams
	st.mu.Lock()
	st.closed = true
	conns := make([]*streamConn, 0, len(st.conns))
	for c := range st.conns {
		conns = append(conns, c)
	}
	st.mu.Unlock()
	for _, c := range conns {
		// Unblocks the read loop, which waits for its handlers and closes.
		_ = c.conn.SetReadDeadline(time.Now())
	}
}

func (st *streams) add(c *streamConn) bool {
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.closed {
		return false
	}
	if st.conns == nil {
		st.conns = map[*streamConn]struct{}{}
	}
	st.conns[c] = struct{}{}
	return true
}

func (st *streams) remove(c *streamConn) {
	st.mu.Lock()
	defer st.mu.Unlock()
	delete(st.conns, c)
}

// stream upgrades an internal request (already authenticated by
// requireToken) to a peer stream of batch requests (wire.PathStream).
func (s *server) stream(w http.ResponseWriter, r *http.Request) {
	if !httpguts.HeaderValuesContainsToken(r.Header.Values("Connection"), "upgrade") || !strings.EqualFold(r.Header.Get("Upgrade"), wire.StreamProtocol) {
		s.fail(w, r, "stream", fmt.Errorf("%w: %s needs Connection: Upgrade and Upgrade: %s", ErrUnexpectedRequest, wire.PathStream, wire.StreamProtocol))
		return
	}
	conn, brw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		s.fail(w, r, "stream", fmt.Errorf("upgrading to a peer stream: %w", err))
		return
	}
	// Frames go through the server's whole handler, as the HTTP batch
	// requests they replace did: the same checks, logs, spans and metrics
	// (and, in tests, the same fault injectors in front of it).
	root := http.Handler(s.root)
	if srv, ok := r.Context().Value(http.ServerContextKey).(*http.Server); ok && srv.Handler != nil {
		root = srv.Handler
	}
	ctx, cancel := context.WithCancel(context.WithoutCancel(r.Context()))
	c := &streamConn{s: s, conn: conn, r: brw.Reader, w: brw.Writer, req: r, root: root, ctx: ctx, cancel: cancel,
		work: make(chan streamJob)}
	if !s.streams.add(c) {
		cancel()
		conn.Close() // shutting down
		return
	}
	// The server's read and write timeouts were meant for one request.
	_ = conn.SetDeadline(time.Time{})
	_, _ = c.w.WriteString("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: " + wire.StreamProtocol + "\r\n\r\n")
	if err := c.w.Flush(); err != nil {
		cancel()
		s.streams.remove(c)
		conn.Close()
		return
	}
	s.o.Metrics.StreamsOpen.Inc()
	go c.serve()
}

// streamConn serves one peer stream: it reads request frames, hands each
// to the server's handler as a request to the batch endpoint of its op, in
// a goroutine of its own, and writes each answer as it is ready.
type streamConn struct {
	s    *server
	conn net.Conn
	r    *bufio.Reader
	req  *http.Request // the upgrade request: credentials, peer address, TLS state
	root http.Handler
	// ctx is the requests' context, cancelled when the stream ends.
	ctx    context.Context
	cancel context.CancelFunc
	// work hands requests to the stream's workers, at most
	// streamConcurrency, started as the load needs them. Workers live as
	// long as the stream, so their stacks, grown once through the handler
	// and the engine, are not grown again for every request.
	work     chan streamJob
	workers  int // started so far; read loop only
	handlers sync.WaitGroup
	// writers counts answers waiting for wmu: the last one flushes, so
	// answers ready together leave in one write.
	writers atomic.Int32
	wmu     sync.Mutex
	w       *bufio.Writer
	broken  bool // guarded by wmu: a write failed, the connection is closing
}

func (c *streamConn) serve() {
	defer func() {
		c.cancel()
		close(c.work)
		c.handlers.Wait()
		c.conn.Close()
		c.s.streams.remove(c)
		c.s.o.Metrics.StreamsOpen.Dec()
	}()
	for {
		job, err := c.next()
		if errors.Is(err, wire.ErrBadStreamRequest) {
			// Read whole: answered with 400, and the stream goes on.
			c.s.o.Metrics.Errors.WithLabelValues("stream", "bad_request").Inc()
			fw := newFrameWriter()
			writeError(fw, err)
			c.write(fw.frame(job.q.ID))
			continue
		}
		if err != nil {
			var ne net.Error
			if !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) && !errors.Is(err, context.Canceled) && !(errors.As(err, &ne) && ne.Timeout()) {
				// A frame that cannot be read leaves no way to find the
				// next one: the stream ends, the peer's pending calls fail
				// and it opens a new one.
				c.s.o.Metrics.Errors.WithLabelValues("stream", "bad_request").Inc()
				c.s.o.Logger.Warn().Err(err).Str("peer", c.req.RemoteAddr).Msg("closing a peer stream that sent an unreadable frame")
			}
			return
		}
		select {
		case c.work <- job: // an idle worker took it
			continue
		default:
		}
		if c.workers < streamConcurrency {
			c.workers++
			c.handlers.Add(1)
			go c.worker()
		}
		c.work <- job // with every worker busy, the stream waits here
	}
}

// next reads the next request and reserves its memory against the same
// budget as HTTP batch bodies (MaxInflightBatchBytes), before reading it:
// past the budget this stream waits (TCP holds the peer's writes) instead
// of answering 503. The job holds the reservation; on an error none is
// held, and a request read whole comes with the ErrBadStreamRequest.
func (c *streamConn) next() (streamJob, error) {
	head, err := c.r.Peek(4)
	if err != nil {
		return streamJob{}, err
	}
	// Capped: a longer frame is refused by ReadStreamRequest.
	job := streamJob{reserved: min(int64(binary.BigEndian.Uint32(head)), c.budgetCap())}
	if err := c.s.batchBytes.Acquire(c.ctx, job.reserved); err != nil {
		return streamJob{}, err
	}
	job.q, err = wire.ReadStreamRequest(c.r, wire.MaxStreamBody(c.s.o.BlockSize))
	if err == nil && job.q.Op == wire.OpFetch {
		// A fetch's answer is the large part: a block per id.
		ids := int64(bytes.Count(job.q.Body, []byte{'\n'}) + 1)
		if extra := min(ids*int64(c.s.o.BlockSize+wire.MaxFrameOverhead+1), c.budgetCap()) - job.reserved; extra > 0 {
			if err = c.s.batchBytes.Acquire(c.ctx, extra); err == nil {
				job.reserved += extra
			}
		}
	}
	if err != nil {
		c.s.batchBytes.Release(job.reserved)
		job.reserved = 0
	}
	return job, err
}

// streamJob is a request read from the stream and the budget it holds.
type streamJob struct {
	q        wire.StreamRequest
	reserved int64
}

func (c *streamConn) worker() {
	defer c.handlers.Done()
	for job := range c.work {
		c.answer(job.q)
		c.s.batchBytes.Release(job.reserved)
	}
}

// budgetCap is the most one frame reserves: the largest batch, which the
// budget always has room for.
func (c *streamConn) budgetCap() int64 { return wire.MaxBatchBody(c.s.o.BlockSize) }

// answer runs one request through the server's handler, as the HTTP
// batch request it stands for, and writes the response frame. The first
// trace context the request carries continues in the span the tracing
// middleware opens; spanAttributes links the others.
func (c *streamConn) answer(q wire.StreamRequest) {
	ctx := context.WithValue(c.ctx, streamFrameKey{}, streamFrame{traces: q.Traces})
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, wire.OpPath(q.Op), bytes.NewReader(q.Body))
	if err != nil {
		return
	}
	req.RemoteAddr, req.TLS, req.Host = c.req.RemoteAddr, c.req.TLS, c.req.Host
	if a := c.req.Header.Get("Authorization"); a != "" {
		req.Header.Set("Authorization", a)
	}
	req.Header.Set("Content-Type", "application/octet-stream")
	if q.Flags&wire.StreamTransfer != 0 {
		req.Header.Set(wire.HeaderTransfer, "migration")
	}
	if len(q.Traces) > 0 {
		for k, v := range q.Traces[0] {
			if k != wire.TraceBlockID {
				req.Header.Set(k, v)
			}
		}
	}
	fw := newFrameWriter()
	c.root.ServeHTTP(fw, req)
	c.write(fw.frame(q.ID))
}

type streamFrameKey struct{}

// streamFrame marks a request that came as a frame on a stream, whose
// memory the stream reserved already.
type streamFrame struct {
	traces []map[string]string
}

func fromStream(ctx context.Context) (streamFrame, bool) {
	f, ok := ctx.Value(streamFrameKey{}).(streamFrame)
	return f, ok
}

// streamTraceAttributes returns, for a request that came on a stream with
// trace contexts, the block of the call whose trace the span continues
// and links to the other sampled calls of the batch.
func streamTraceAttributes(ctx context.Context, p propagation.TextMapPropagator) (block string, links []trace.Link) {
	f, _ := fromStream(ctx)
	if len(f.traces) == 0 {
		return "", nil
	}
	for _, other := range f.traces[1:] {
		sc := trace.SpanContextFromContext(p.Extract(context.Background(), propagation.MapCarrier(other)))
		if sc.IsValid() {
			links = append(links, trace.Link{SpanContext: sc})
		}
	}
	return f.traces[0][wire.TraceBlockID], links
}

func (c *streamConn) write(frame []byte) {
	c.writers.Add(1)
	c.wmu.Lock()
	defer c.wmu.Unlock()
	last := c.writers.Add(-1) == 0
	if c.broken {
		return
	}
	_ = c.conn.SetWriteDeadline(time.Now().Add(streamWriteTimeout))
	_, err := c.w.Write(frame)
	if err == nil && last {
		err = c.w.Flush()
	}
	if err != nil {
		// The peer stopped reading or went away: its pending calls fail
		// when the connection closes, which also ends the read loop.
		c.broken = true
		_ = c.conn.Close()
	}
}

// frameWriter is the http.ResponseWriter of a stream request: it keeps
// the status and body, behind room for the response frame's header.
type frameWriter struct {
	header http.Header
	status int
	buf    []byte
}

func newFrameWriter() *frameWriter {
	return &frameWriter{header: http.Header{}, buf: make([]byte, wire.StreamResponseHead, wire.StreamResponseHead+512)}
}

func (f *frameWriter) Header() http.Header { return f.header }

func (f *frameWriter) WriteHeader(code int) {
	if f.status == 0 {
		f.status = code
	}
}

func (f *frameWriter) Write(p []byte) (int, error) {
	f.WriteHeader(http.StatusOK)
	f.buf = append(f.buf, p...)
	return len(p), nil
}

func (f *frameWriter) statusCode() int {
	if f.status == 0 {
		return http.StatusOK
	}
	return f.status
}

// frame fills in the response header in front of the body.
func (f *frameWriter) frame(id uint32) []byte {
	wire.PutStreamResponseHead(f.buf, id, f.statusCode())
	return f.buf
}
