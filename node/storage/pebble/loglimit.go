package pebble

import (
	"sync"
	"time"
)

// logInterval is the shortest time between two log lines of one kind.
// Pebble retries a failing flush or compaction at once, with no backoff
// (see the TODOs at compaction.go:1890 and :2681 in v1.1.5), and logs each
// failure: a compaction over a corrupt block was measured failing ~400
// times a second. One line per kind per 10 s keeps such a loop visible
// without burying the node's other logs.
const logInterval = 10 * time.Second

// logLimiter lets through at most one line per kind per interval and
// counts the lines it drops, so the next line of that kind can say how
// many were suppressed. Kinds are a small fixed set (pebble's format
// strings and our error classes), so the map stays small. It is safe for
// concurrent use and never blocks on I/O: pebble calls it with its own
// mutex held.
type logLimiter struct {
	interval time.Duration
	now      func() time.Time

	mu    sync.Mutex
	kinds map[string]*logKind
}

type logKind struct {
	last       time.Time // when a line of this kind was last let through
	suppressed int       // lines dropped since then
}

func newLogLimiter(interval time.Duration, now func() time.Time) *logLimiter {
	return &logLimiter{interval: interval, now: now, kinds: make(map[string]*logKind)}
}

// allow reports whether a line of kind may be logged now and, if so, how
// many lines of that kind were dropped since the last one let through.
func (l *logLimiter) allow(kind string) (ok bool, suppressed int) {
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	k := l.kinds[kind]
	if k == nil {
		k = &logKind{}
		l.kinds[kind] = k
	} else if now.Sub(k.last) < l.interval {
		k.suppressed++
		return false, 0
	}
	suppressed, k.suppressed, k.last = k.suppressed, 0, now
	return true, suppressed
}

// logf logs format with args through logf if kind is allowed now,
// appending the count of lines suppressed before it.
func (l *logLimiter) logf(logf func(string, ...any), kind, format string, args ...any) {
	ok, suppressed := l.allow(kind)
	if !ok {
		return
	}
	if suppressed > 0 {
		format += " (%d similar lines suppressed)"
		args = append(args[:len(args):len(args)], suppressed)
	}
	logf(format, args...)
}
