package pebble

import (
	"testing"
	"time"
)

func TestGateCloseWaitsForOperations(t *testing.T) {
	g := newGate()
	if !g.enter() {
		t.Fatal("enter refused on an open gate")
	}
	closed := make(chan bool)
	go func() {
		first, wedged := g.close()
		closed <- first && !wedged
	}()
	// close must wait: the operation is in flight. Once it has stopped
	// admitting, leave lets it finish.
	for g.enter() {
		g.leave()
	}
	select {
	case <-closed:
		t.Fatal("close returned with an operation in flight")
	default:
	}
	g.leave()
	if ok := <-closed; !ok {
		t.Fatal("close = not first or wedged")
	}
	if g.enter() {
		t.Fatal("enter admitted after close")
	}
	if first, _ := g.close(); first {
		t.Fatal("second close reported first")
	}
}

// TestGateCloseGivesUpOnWedge: an operation stuck inside a wedged pebble
// never leaves; close must return anyway.
func TestGateCloseGivesUpOnWedge(t *testing.T) {
	g := newGate()
	g.enter() // stuck forever
	done := make(chan bool)
	go func() {
		_, wedged := g.close()
		done <- wedged
	}()
	for g.enter() {
		g.leave()
	}
	g.wedge()
	select {
	case wedged := <-done:
		if !wedged {
			t.Fatal("close did not report the wedge")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("close waits for an operation stuck in a wedged pebble")
	}
}
