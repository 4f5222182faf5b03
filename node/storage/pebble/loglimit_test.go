package pebble

import (
	"fmt"
	"testing"
	"time"
)

// fakeClock is a settable clock.
type fakeClock struct{ t time.Time }

func (c *fakeClock) now() time.Time          { return c.t }
func (c *fakeClock) advance(d time.Duration) { c.t = c.t.Add(d) }

func TestLogLimiter(t *testing.T) {
	clock := &fakeClock{t: time.Unix(1_700_000_000, 0)}
	l := newLogLimiter(10*time.Second, clock.now)
	var lines []string
	logf := func(format string, args ...any) { lines = append(lines, fmt.Sprintf(format, args...)) }

	for i := range 350 { // a second of pebble's compaction retry loop
		l.logf(logf, "loop", "failure %d", i)
		clock.advance(time.Second / 350)
	}
	l.logf(logf, "other", "another kind")
	clock.advance(9*time.Second + time.Millisecond) // 10 s after "failure 0"
	l.logf(logf, "loop", "failure at 10s")
	want := []string{
		"failure 0",
		"another kind",
		"failure at 10s (349 similar lines suppressed)",
	}
	if fmt.Sprint(lines) != fmt.Sprint(want) {
		t.Fatalf("lines = %q, want %q", lines, want)
	}
	clock.advance(10 * time.Second)
	l.logf(logf, "loop", "later")
	if got := lines[len(lines)-1]; got != "later" {
		t.Fatalf("after a quiet interval: %q, want no suppressed count", got)
	}
}
