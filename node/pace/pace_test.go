package pace

import (
	"context"
	"testing"
	"testing/synctest"
	"time"
)

func TestLimiterHoldsTheRate(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l := NewLimiter(100) // units per second
		start := time.Now()
		for range 10 {
			if err := l.Wait(context.Background(), 50); err != nil {
				t.Fatal(err)
			}
		}
		if got := time.Since(start); got != 5*time.Second {
			t.Fatalf("500 units at 100/s took %v, want 5s", got)
		}
	})
}

func TestUnlimitedNeverWaits(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		start := time.Now()
		for _, l := range []*Limiter{nil, NewLimiter(0)} {
			if err := l.Wait(context.Background(), 1<<40); err != nil {
				t.Fatal(err)
			}
		}
		if time.Since(start) != 0 {
			t.Fatal("an unlimited limiter waited")
		}
	})
}

func TestSleepEndsWithTheContext(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		start := time.Now()
		if err := Sleep(ctx, time.Hour); err != context.DeadlineExceeded {
			t.Fatalf("err %v", err)
		}
		if time.Since(start) != time.Second {
			t.Fatalf("returned after %v", time.Since(start))
		}
	})
}
