package nbd

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"

	"github.com/rs/zerolog"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
	"golang.org/x/sync/semaphore"

	"github.com/goblocks/goblocks/node/volume"
)

// transmissionFlags are what every export offers. Every write is
// acknowledged only once the cluster has it at the write consistency
// (fsync'd on a quorum of replicas), so FLUSH and FUA have nothing left to
// wait for, and a write one connection completed is visible to every other
// connection (quorum reads): multi-conn is safe.
const transmissionFlags = tflagHasFlags | tflagSendFlush | tflagSendFUA |
	tflagSendTrim | tflagSendWriteZeroes | tflagCanMultiConn

// errProtocol marks a client that broke the protocol: the connection is
// closed.
var errProtocol = errors.New("nbd: protocol violation")

// Exports finds volumes by export name.
type Exports interface {
	// Lookup returns the volume to serve as export name: volume.ErrNotFound
	// when there is none, volume.ErrDeleting while it is being removed.
	Lookup(ctx context.Context, name string) (volume.Volume, error)
	// List returns the names of the volumes that can be served.
	List(ctx context.Context) ([]string, error)
}

// Device does the volume I/O (volume.IO).
type Device interface {
	ReadAt(ctx context.Context, v volume.Volume, p []byte, off int64) error
	WriteAt(ctx context.Context, v volume.Volume, p []byte, off int64) error
	Zero(ctx context.Context, v volume.Volume, off, length int64, punch bool) error
	Trim(ctx context.Context, v volume.Volume, off, length int64) error
}

// Options configure a Server.
type Options struct {
	Exports Exports
	Device  Device
	// MaxConnections caps open connections (default 64); one more is
	// closed at once.
	MaxConnections int
	// MaxInflightBytes caps the request payloads one connection holds at
	// once (default 64 MiB); the connection stops reading requests until
	// some complete.
	MaxInflightBytes int64
	// MaxInflightRequests caps the requests one connection runs at once
	// (default 128).
	MaxInflightRequests int64
	// HandshakeTimeout bounds the negotiation (default 30 s), so a client
	// that connects and says nothing does not hold a slot.
	HandshakeTimeout time.Duration
	Logger           zerolog.Logger
	Metrics          *Metrics
	Tracer           trace.Tracer
}

// Server serves NBD connections.
type Server struct {
	o      Options
	slots  chan struct{}
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu    sync.Mutex
	ln    net.Listener
	conns map[net.Conn]struct{}
}

// NewServer returns a server; Serve starts it.
func NewServer(o Options) *Server {
	if o.MaxConnections <= 0 {
		o.MaxConnections = 64
	}
	if o.MaxInflightBytes <= 0 {
		o.MaxInflightBytes = 64 << 20
	}
	o.MaxInflightBytes = max(o.MaxInflightBytes, maxPayload)
	if o.MaxInflightRequests <= 0 {
		o.MaxInflightRequests = 128
	}
	if o.HandshakeTimeout <= 0 {
		o.HandshakeTimeout = 30 * time.Second
	}
	if o.Metrics == nil {
		o.Metrics = NewMetrics(nil)
	}
	if o.Tracer == nil {
		o.Tracer = noop.NewTracerProvider().Tracer("")
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Server{o: o, slots: make(chan struct{}, o.MaxConnections), ctx: ctx, cancel: cancel, conns: map[net.Conn]struct{}{}}
}

// Serve accepts connections on ln until Close. It returns nil after Close.
func (s *Server) Serve(ln net.Listener) error {
	s.mu.Lock()
	if s.ctx.Err() != nil {
		s.mu.Unlock()
		return ln.Close()
	}
	s.ln = ln
	s.mu.Unlock()
	for {
		nc, err := ln.Accept()
		if err != nil {
			if s.ctx.Err() != nil {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			return err
		}
		select {
		case s.slots <- struct{}{}:
		default:
			s.o.Metrics.Refused.Inc()
			s.o.Logger.Warn().Str("remote", nc.RemoteAddr().String()).Int("max", s.o.MaxConnections).Msg("nbd: connection limit reached, closing new connection")
			_ = nc.Close()
			continue
		}
		if !s.track(nc) {
			<-s.slots
			_ = nc.Close()
			return nil
		}
		// The gauge counts the slots held: once it falls, a new
		// connection has room.
		s.o.Metrics.Connections.Inc()
		s.wg.Go(func() {
			defer func() { <-s.slots; s.o.Metrics.Connections.Dec() }()
			defer s.untrack(nc)
			s.serveConn(nc)
		})
	}
}

func (s *Server) track(nc net.Conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ctx.Err() != nil {
		return false
	}
	s.conns[nc] = struct{}{}
	return true
}

func (s *Server) untrack(nc net.Conn) {
	s.mu.Lock()
	delete(s.conns, nc)
	s.mu.Unlock()
	_ = nc.Close()
}

// Close stops accepting, ends every connection (requests in flight are
// cancelled) and waits for their goroutines.
func (s *Server) Close() error {
	s.mu.Lock()
	s.cancel()
	var err error
	if s.ln != nil {
		err = s.ln.Close()
	}
	for nc := range s.conns {
		_ = nc.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
	return err
}

// conn is one client connection.
type conn struct {
	s  *Server
	nc net.Conn
	br *bufio.Reader
	bw *bufio.Writer
	// wmu serializes replies: requests finish in any order.
	wmu sync.Mutex
}

func (s *Server) serveConn(nc net.Conn) {
	c := &conn{s: s, nc: nc, br: bufio.NewReaderSize(nc, 64<<10), bw: bufio.NewWriterSize(nc, 64<<10)}
	log := s.o.Logger.With().Str("remote", nc.RemoteAddr().String()).Logger()
	_ = nc.SetDeadline(time.Now().Add(s.o.HandshakeTimeout))
	v, err := c.handshake(s.ctx)
	if err != nil {
		if errors.Is(err, errProtocol) {
			s.o.Metrics.protocolError("handshake")
		}
		if !errors.Is(err, errAborted) && !errors.Is(err, io.EOF) {
			log.Info().Err(err).Msg("nbd: handshake ended")
		}
		return
	}
	_ = nc.SetDeadline(time.Time{})
	log = log.With().Str("volume", v.Name).Logger()
	log.Info().Int64("size", v.Size).Msg("nbd: client attached")
	err = c.transmit(s.ctx, v)
	switch {
	case err == nil:
		log.Info().Msg("nbd: client disconnected")
	case errors.Is(err, errProtocol):
		s.o.Metrics.protocolError("transmission")
		log.Warn().Err(err).Msg("nbd: closing connection")
	default:
		log.Info().Err(err).Msg("nbd: connection ended")
	}
}

// transmit serves requests until NBD_CMD_DISC, a protocol violation or a
// broken connection. Requests run concurrently; transmit returns after
// the last of them has replied (or failed to, on a closed connection).
func (c *conn) transmit(parent context.Context, v volume.Volume) error {
	ctx, cancel := context.WithCancel(parent)
	defer cancel()
	bytes := semaphore.NewWeighted(c.s.o.MaxInflightBytes)
	reqs := semaphore.NewWeighted(c.s.o.MaxInflightRequests)
	var wg sync.WaitGroup
	defer wg.Wait()
	// A connection closed under the reader (Close, or the client gone)
	// also cancels the requests in flight.
	stop := context.AfterFunc(ctx, func() { _ = c.nc.SetReadDeadline(time.Now()) })
	defer stop()
	// Any end but NBD_CMD_DISC cancels the requests in flight: nobody is
	// left to take their replies.
	fail := func(err error) error {
		cancel()
		return err
	}
	var hdr [requestHeaderLen]byte
	for {
		req, magic, err := readRequest(c.br, &hdr)
		if err != nil {
			if errors.Is(err, io.EOF) {
				return fail(errors.New("client closed the connection without NBD_CMD_DISC"))
			}
			return fail(err)
		}
		if magic != magicRequest {
			return fail(fmt.Errorf("%w: request magic %#x", errProtocol, magic))
		}
		if req.typ == cmdDisc {
			return nil // the deferred Wait lets requests in flight reply
		}
		var payload []byte
		weight := int64(1)
		if req.typ == cmdRead || req.typ == cmdWrite {
			if req.length > maxPayload {
				if req.typ == cmdWrite {
					// Its payload cannot be skipped safely.
					return fail(fmt.Errorf("%w: write of %d bytes (limit %d)", errProtocol, req.length, maxPayload))
				}
				c.reply(req, errInval, nil, nil)
				continue
			}
			weight = max(1, int64(req.length))
		}
		if err := reqs.Acquire(ctx, 1); err != nil {
			return fail(err)
		}
		if err := bytes.Acquire(ctx, weight); err != nil {
			reqs.Release(1)
			return fail(err)
		}
		if req.typ == cmdWrite {
			payload = make([]byte, req.length)
			if _, err := io.ReadFull(c.br, payload); err != nil {
				bytes.Release(weight)
				reqs.Release(1)
				return fail(fmt.Errorf("client gone in the middle of a write's payload: %w", err))
			}
		}
		c.s.o.Metrics.Inflight.Inc()
		wg.Go(func() {
			defer reqs.Release(1)
			defer bytes.Release(weight)
			defer c.s.o.Metrics.Inflight.Dec()
			c.serve(ctx, v, req, payload)
		})
	}
}

// serve runs one request and sends its reply.
func (c *conn) serve(ctx context.Context, v volume.Volume, req requestHeader, payload []byte) {
	name := commandName(req.typ)
	start := time.Now()
	ctx, span := c.s.o.Tracer.Start(ctx, "nbd."+name, trace.WithSpanKind(trace.SpanKindServer),
		trace.WithAttributes(attribute.String("volume", v.Name), attribute.Int64("offset", int64(req.offset)),
			attribute.Int64("length", int64(req.length))))
	defer span.End()
	var data []byte
	errno, err := c.run(ctx, v, req, payload, &data)
	if err != nil {
		span.SetStatus(codes.Error, err.Error())
		c.s.o.Logger.Warn().Err(err).Str("volume", v.Name).Str("command", name).
			Uint64("offset", req.offset).Uint32("length", req.length).Msg("nbd: request failed")
	}
	c.reply(req, errno, data, span)
	c.s.o.Metrics.observe(name, errno, int(req.length), time.Since(start))
}

// run executes a request: the errno to answer and, for a read, the data.
func (c *conn) run(ctx context.Context, v volume.Volume, req requestHeader, payload []byte, data *[]byte) (uint32, error) {
	if req.flags&^(cmdFlagFUA|cmdFlagNoHole) != 0 {
		return errInval, fmt.Errorf("unknown command flags %#x", req.flags)
	}
	off, length := int64(req.offset), int64(req.length)
	if req.offset > uint64(volume.MaxSize) {
		off = -1 // out of range for every volume; spans refuses it
	}
	var err error
	switch req.typ {
	case cmdRead:
		buf := make([]byte, length)
		if err = c.s.o.Device.ReadAt(ctx, v, buf, off); err == nil {
			*data = buf
		}
	case cmdWrite:
		err = c.s.o.Device.WriteAt(ctx, v, payload, off)
	case cmdFlush:
		// Every write was acknowledged at the write consistency before its
		// reply: nothing is left to flush.
		return 0, nil
	case cmdTrim:
		err = c.s.o.Device.Trim(ctx, v, off, length)
	case cmdWriteZeroes:
		err = c.s.o.Device.Zero(ctx, v, off, length, req.flags&cmdFlagNoHole == 0)
	default:
		return errInval, fmt.Errorf("unknown command %d", req.typ)
	}
	return errnoOf(req.typ, err), err
}

// errnoOf maps an I/O error to the protocol's errno: out of range is
// EINVAL (ENOSPC for writes, as the protocol asks), the rest EIO.
func errnoOf(typ uint16, err error) uint32 {
	switch {
	case err == nil:
		return 0
	case errors.Is(err, volume.ErrRange) && (typ == cmdWrite || typ == cmdWriteZeroes):
		return errNoSpc
	case errors.Is(err, volume.ErrRange):
		return errInval
	case errors.Is(err, context.Canceled):
		return errShutdown
	}
	return errIO
}

// reply sends a simple reply; data follows only a successful read. A
// failed write to the socket closes it, which ends the reader too.
func (c *conn) reply(req requestHeader, errno uint32, data []byte, span trace.Span) {
	var hdr [16]byte
	b := appendReply(hdr[:0], errno, req.handle)
	c.wmu.Lock()
	defer c.wmu.Unlock()
	_, err := c.bw.Write(b)
	if err == nil && errno == 0 && req.typ == cmdRead {
		_, err = c.bw.Write(data)
	}
	if err == nil {
		err = c.bw.Flush()
	}
	if err != nil {
		if span != nil {
			span.SetStatus(codes.Error, "reply: "+err.Error())
		}
		_ = c.nc.Close()
	}
}
