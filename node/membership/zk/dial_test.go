package zk

import (
	"errors"
	"net"
	"os"
	"testing"
	"time"
)

// A server that accepts and never answers: every read through the dialer
// ends within the cap, whatever deadline the library asked for (none, or
// one far away), and a nearer deadline is kept.
func TestBoundedReadDialer(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			defer c.Close()
		}
	}()
	const maxRead = 200 * time.Millisecond
	dial := boundedReadDialer(maxRead)
	for _, tc := range []struct {
		name     string
		deadline func() time.Time
		atMost   time.Duration
	}{
		{"no deadline", func() time.Time { return time.Time{} }, maxRead},
		{"ten times the receive timeout", func() time.Time { return time.Now().Add(time.Minute) }, maxRead},
		{"a nearer deadline", func() time.Time { return time.Now().Add(20 * time.Millisecond) }, 20 * time.Millisecond},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := dial("tcp", ln.Addr().String(), time.Second)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if err := c.SetReadDeadline(tc.deadline()); err != nil {
				t.Fatal(err)
			}
			start := time.Now()
			_, err = c.Read(make([]byte, 4))
			if !errors.Is(err, os.ErrDeadlineExceeded) {
				t.Fatalf("read from a silent server: %v, want a deadline error", err)
			}
			// Generous upper bound: the point is "bounded", not "prompt".
			if took := time.Since(start); took > tc.atMost+5*time.Second {
				t.Fatalf("read took %v, want about %v", took, tc.atMost)
			}
		})
	}
}
