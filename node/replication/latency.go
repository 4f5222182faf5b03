package replication

import (
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// latencyTracker estimates the p99 of recent replica reads, the delay
// after which a read also asks the next owner. It keeps a fixed window of
// samples and recomputes the quantile every recomputeEvery samples, so the
// hot path is one short critical section and the estimate follows load.
type latencyTracker struct {
	mu      sync.Mutex
	samples [latencyWindow]time.Duration
	n       int // samples recorded so far (saturates the ring index only)
	p99     atomic.Int64
}

const (
	latencyWindow  = 512
	recomputeEvery = 64
)

func newLatencyTracker() *latencyTracker { return &latencyTracker{} }

func (l *latencyTracker) observe(d time.Duration) {
	l.mu.Lock()
	l.samples[l.n%latencyWindow] = d
	l.n++
	if l.n%recomputeEvery != 0 {
		l.mu.Unlock()
		return
	}
	size := min(l.n, latencyWindow)
	window := slices.Clone(l.samples[:size])
	l.mu.Unlock()
	slices.Sort(window)
	l.p99.Store(int64(window[(size*99)/100]))
}

// threshold is the p99 estimate, never below floor.
func (l *latencyTracker) threshold(floor time.Duration) time.Duration {
	return max(floor, time.Duration(l.p99.Load()))
}
