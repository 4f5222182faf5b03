package hlc

import (
	"testing"
	"time"
)

func TestClockMonotonicWhenWallStandsStill(t *testing.T) {
	wall := time.UnixMilli(1_700_000_000_000)
	c := NewClock(func() time.Time { return wall })
	prev := c.Now()
	for i := 0; i < 1000; i++ {
		next := c.Now()
		if next <= prev {
			t.Fatalf("timestamp %d not after %d", next, prev)
		}
		prev = next
	}
	if got := prev.Physical(); !got.Equal(wall) {
		t.Fatalf("physical part drifted to %v", got)
	}
}

func TestClockObservePushesForward(t *testing.T) {
	c := NewClock(func() time.Time { return time.UnixMilli(1000) })
	remote := pack(5000, 7)
	c.Observe(remote)
	if got := c.Now(); got <= remote {
		t.Fatalf("Now() = %d, want after observed %d", got, remote)
	}
	c.Observe(pack(10, 0)) // older: ignored
	if got := c.Now(); got <= remote {
		t.Fatalf("old observation moved clock back: %d", got)
	}
}

func TestVersionCompare(t *testing.T) {
	tests := []struct {
		a, b Version
		want int
	}{
		{Version{1, "a"}, Version{2, "a"}, -1},
		{Version{2, "a"}, Version{1, "z"}, 1},
		{Version{2, "a"}, Version{2, "b"}, -1},
		{Version{2, "b"}, Version{2, "b"}, 0},
		{Version{}, Version{1, "a"}, -1},
	}
	for _, tc := range tests {
		if got := tc.a.Compare(tc.b); got != tc.want {
			t.Errorf("%v.Compare(%v) = %d, want %d", tc.a, tc.b, got, tc.want)
		}
	}
}

func TestParseVersion(t *testing.T) {
	good := Version{Timestamp: 123456, Node: "node-1"}
	if got, err := ParseVersion(good.String()); err != nil || got != good {
		t.Fatalf("round trip: %v, %v", got, err)
	}
	for _, bad := range []string{"", "-", "12", "12-", "-a", "x-a", "0-a", "-1-a"} {
		if _, err := ParseVersion(bad); err == nil {
			t.Errorf("ParseVersion(%q) accepted", bad)
		}
	}
}
