package zk

import (
	"net"
	"time"
)

// boundedReadDialer dials ZooKeeper with connections whose reads never
// wait longer than maxRead. go-zookeeper gives the reply to its connect
// request 10 x its receive timeout (more than six session timeouts) and
// reads the reply's body with no deadline at all: a server that accepts
// the connection while it restarts, and does not answer, holds the client
// past its session's expiry, and a node stopped meanwhile leaves the
// goroutine behind. Every read the library makes is preceded by a
// deadline it sets, so capping each one (and giving the unbounded ones
// the cap) bounds them all.
func boundedReadDialer(maxRead time.Duration) func(network, address string, timeout time.Duration) (net.Conn, error) {
	return func(network, address string, timeout time.Duration) (net.Conn, error) {
		c, err := net.DialTimeout(network, address, timeout)
		if err != nil {
			return nil, err
		}
		return boundedReadConn{Conn: c, maxRead: maxRead}, nil
	}
}

type boundedReadConn struct {
	net.Conn
	maxRead time.Duration
}

func (c boundedReadConn) SetReadDeadline(t time.Time) error {
	limit := time.Now().Add(c.maxRead)
	if t.IsZero() || t.After(limit) {
		t = limit
	}
	return c.Conn.SetReadDeadline(t)
}
