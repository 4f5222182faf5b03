// Package testkit holds the small helpers several packages' tests share:
// polling a condition with a deadline instead of sleeping, and an address
// nobody listens on. Only tests import it.
package testkit

import (
	"net"
	"testing"
	"time"
)

// Eventually polls cond every 20 ms until it returns nil, or fails the
// test with cond's last error once timeout has passed.
func Eventually(t testing.TB, timeout time.Duration, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("condition not met after %v: %v", timeout, err)
		}
		time.Sleep(20 * time.Millisecond) // polling with a deadline, not a wait for a condition
	}
}

// ClosedAddr returns a loopback host:port nobody listens on (it was free a
// moment ago), for tests of unreachable nodes.
func ClosedAddr(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}
