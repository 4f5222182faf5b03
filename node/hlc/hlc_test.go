package hlc

import (
	"errors"
	"testing"
	"time"
)

func TestClockMonotonicWhenWallStandsStill(t *testing.T) {
	wall := time.UnixMilli(1_700_000_000_000)
	c := NewClock(func() time.Time { return wall }, 0)
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
	wall := time.UnixMilli(1_700_000_000_000)
	c := NewClock(func() time.Time { return wall }, time.Second)
	remote := At(wall.Add(300 * time.Millisecond)).Add(7)
	if err := c.Observe(remote); err != nil {
		t.Fatal(err)
	}
	if got := c.Now(); got <= remote {
		t.Fatalf("Now() = %d, want after observed %d", got, remote)
	}
	if err := c.Observe(At(wall.Add(-time.Hour))); err != nil { // older: ignored
		t.Fatal(err)
	}
	if got := c.Now(); got <= remote {
		t.Fatalf("old observation moved clock back: %d", got)
	}
}

// A timestamp further ahead than the offset is refused on Observe, and the
// clock neither jumps nor wraps: the forged maximal version of the trust
// issue once wrapped it to zero.
func TestClockRefusesTheFuture(t *testing.T) {
	wall := time.UnixMilli(1_700_000_000_000)
	c := NewClock(func() time.Time { return wall }, 500*time.Millisecond)
	before := c.Now()
	for _, ts := range []Timestamp{
		^Timestamp(0),
		At(wall.Add(365 * 24 * time.Hour)),
		At(wall.Add(501 * time.Millisecond)),
	} {
		if err := c.Observe(ts); !errors.Is(err, ErrFuture) {
			t.Errorf("Observe(%d) = %v, want ErrFuture", ts, err)
		}
	}
	if err := c.Observe(0); !errors.Is(err, ErrBadVersion) {
		t.Errorf("Observe(0) = %v, want ErrBadVersion", err)
	}
	if err := c.Observe(At(wall.Add(499 * time.Millisecond))); err != nil {
		t.Errorf("within the offset: %v", err)
	}
	after := c.Now()
	if after <= before || after.Physical().Sub(wall) > 500*time.Millisecond {
		t.Fatalf("clock moved from %v to %v", before.Physical(), after.Physical())
	}
}

// Two coordinators whose wall clocks read the same millisecond order their
// writes by the microsecond, not by name.
func TestSubMillisecondResolution(t *testing.T) {
	base := time.UnixMilli(1_700_000_000_000)
	early := NewClock(func() time.Time { return base.Add(100 * time.Microsecond) }, 0)
	late := NewClock(func() time.Time { return base.Add(900 * time.Microsecond) }, 0)
	a := Version{Timestamp: early.Now(), Node: "zz"}
	b := Version{Timestamp: late.Now(), Node: "aa"}
	if !b.Newer(a) {
		t.Fatalf("%v should be newer than %v", b, a)
	}
	if got := b.Timestamp.Physical(); !got.Equal(base.Add(900 * time.Microsecond)) {
		t.Fatalf("physical %v", got)
	}
	// Millisecond-layout timestamps written before the change sort older.
	old := Timestamp(uint64(base.UnixMilli())<<16 | 5)
	if old >= a.Timestamp {
		t.Fatalf("old layout %d not older than %d", old, a.Timestamp)
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
