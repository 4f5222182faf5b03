package api

import (
	"crypto/tls"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// ConnLimiter caps a server's open connections. At the cap, a new
// connection evicts the longest-idle keep-alive connection (its client
// simply reconnects); only when every connection is busy does Accept wait,
// leaving new ones in the kernel's backlog (a connection that never sends
// a request is closed by the server's ReadHeaderTimeout). A flood of idle
// keep-alive connections therefore cannot lock clients out, and a flood of
// busy ones cannot exhaust memory or file descriptors.
type ConnLimiter struct {
	net.Listener
	max int

	mu      sync.Mutex
	cond    *sync.Cond
	open    int
	idle    map[*limitedConn]time.Time // keep-alive connections waiting for a request
	closed  bool
	gauge   prometheus.Gauge
	evicted prometheus.Counter
}

// NewConnLimiter wraps ln. Pass ConnState to the http.Server so idle
// connections are known. reg may be nil.
func NewConnLimiter(ln net.Listener, max int, reg prometheus.Registerer) *ConnLimiter {
	l := &ConnLimiter{
		Listener: ln, max: max, idle: map[*limitedConn]time.Time{},
		gauge:   prometheus.NewGauge(prometheus.GaugeOpts{Name: "blocks_connections_open", Help: "Open HTTP connections (clients and peers)."}),
		evicted: prometheus.NewCounter(prometheus.CounterOpts{Name: "blocks_connections_evicted_total", Help: "Idle keep-alive connections closed to admit a new one at MaxConnections."}),
	}
	l.cond = sync.NewCond(&l.mu)
	if reg != nil {
		reg.MustRegister(l.gauge, l.evicted)
	}
	return l
}

// Accept admits a connection once there is room for it.
func (l *ConnLimiter) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	for l.open >= l.max && !l.closed {
		if victim := l.longestIdle(); victim != nil {
			delete(l.idle, victim)
			l.evicted.Inc()
			// Close outside the count: closeOnce decrements open.
			l.mu.Unlock()
			_ = victim.Close()
			l.mu.Lock()
			continue
		}
		l.cond.Wait()
	}
	if l.closed {
		_ = c.Close()
		return nil, net.ErrClosed
	}
	l.open++
	l.gauge.Set(float64(l.open))
	return &limitedConn{Conn: c, l: l}, nil
}

func (l *ConnLimiter) longestIdle() *limitedConn {
	var victim *limitedConn
	var since time.Time
	for c, t := range l.idle {
		if victim == nil || t.Before(since) {
			victim, since = c, t
		}
	}
	return victim
}

// Close stops accepting and releases a waiting Accept.
func (l *ConnLimiter) Close() error {
	l.mu.Lock()
	l.closed = true
	l.cond.Broadcast()
	l.mu.Unlock()
	return l.Listener.Close()
}

// ConnState tracks which connections are idle; set it as the
// http.Server's ConnState.
func (l *ConnLimiter) ConnState(c net.Conn, st http.ConnState) {
	if tc, ok := c.(*tls.Conn); ok {
		c = tc.NetConn()
	}
	lc, ok := c.(*limitedConn)
	if !ok {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if st == http.StateIdle {
		l.idle[lc] = time.Now()
		l.cond.Signal() // an Accept waiting at the cap can evict it
	} else {
		delete(l.idle, lc)
	}
}

type limitedConn struct {
	net.Conn
	l    *ConnLimiter
	once sync.Once
}

func (c *limitedConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() {
		c.l.mu.Lock()
		c.l.open--
		delete(c.l.idle, c)
		c.l.gauge.Set(float64(c.l.open))
		c.l.cond.Signal()
		c.l.mu.Unlock()
	})
	return err
}
