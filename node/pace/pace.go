// Package pace holds background work (migration transfers, anti-entropy
// repairs, retries) to a rate or a delay without outliving its context.
package pace

import (
	"context"
	"sync"
	"time"
)

// Limiter lets through at most Rate units per second on average since it
// was created. It is safe for concurrent use; a nil or zero-rate Limiter
// never waits.
type Limiter struct {
	rate  float64
	mu    sync.Mutex
	start time.Time
	done  float64
}

// NewLimiter returns a limiter of perSecond units (<= 0: unlimited).
func NewLimiter(perSecond float64) *Limiter {
	return &Limiter{rate: perSecond, start: time.Now()}
}

// Wait accounts for n units and waits until they fit the rate, or ctx ends.
func (l *Limiter) Wait(ctx context.Context, n int64) error {
	if l == nil || l.rate <= 0 {
		return nil
	}
	l.mu.Lock()
	l.done += float64(n)
	due := l.start.Add(time.Duration(l.done / l.rate * float64(time.Second)))
	l.mu.Unlock()
	return Sleep(ctx, time.Until(due))
}

// Sleep waits d, or returns ctx.Err() when ctx ends first.
func Sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
