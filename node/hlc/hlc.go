// Package hlc implements the hybrid logical clock that versions every block
// write. A version is an HLC timestamp plus the name of the coordinator that
// assigned it, so two coordinators can never produce equal versions for
// different contents: last-writer-wins is then a total order and every
// transfer path (replication, migration, repair) is idempotent.
package hlc

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"
)

// logicalBits is the width of the logical counter in a Timestamp. The
// physical part is in microseconds, so two writes of one block through
// different coordinators within the same millisecond still get distinct,
// ordered wall times; 4,096 versions per microsecond per coordinator fit
// before the clock borrows from the next microsecond.
const logicalBits = 12

// maxPhysical is the largest wall time a Timestamp can hold (52 bits of
// microseconds: the year 2112).
const maxPhysical = 1<<(64-logicalBits) - 1

// Timestamp packs wall-clock microseconds since the Unix epoch (upper 52
// bits) and a logical counter (lower 12 bits). Comparing Timestamps as
// integers orders them.
//
// Timestamps of the earlier millisecond layout (48 bits of milliseconds,
// 16 logical bits) compare as older than every microsecond timestamp, so
// data written before the change is superseded, never preferred.
type Timestamp uint64

// Physical returns the wall-clock part.
func (t Timestamp) Physical() time.Time {
	return time.UnixMicro(int64(t >> logicalBits))
}

// Logical returns the logical counter.
func (t Timestamp) Logical() uint16 { return uint16(t & (1<<logicalBits - 1)) }

func pack(us int64, logical uint64) Timestamp {
	if us < 0 {
		us = 0
	}
	if us > maxPhysical {
		us = maxPhysical
	}
	return Timestamp(uint64(us)<<logicalBits | logical&(1<<logicalBits-1))
}

// At returns the first timestamp of wall time t.
func At(t time.Time) Timestamp { return pack(t.UnixMicro(), 0) }

// ErrFuture: a timestamp is further ahead of this node's wall clock than
// the allowed offset. Accepting it would let one skewed or hostile peer
// date every later write of a block into the future (and a maximal one
// would wrap the clock), so it is refused on every path.
var ErrFuture = errors.New("hlc: timestamp ahead of the local clock")

// DefaultMaxOffset is how far ahead of the local wall clock an observed
// timestamp may be: NTP keeps hosts within a few milliseconds; half a
// second leaves room for a poorly synchronized VM without letting a
// version outrun real time by much.
const DefaultMaxOffset = 500 * time.Millisecond

// Clock hands out strictly increasing Timestamps that never fall behind
// any timestamp it has observed, and refuses to observe timestamps more
// than MaxOffset ahead of its wall clock. It is safe for concurrent use.
type Clock struct {
	now       func() time.Time
	maxOffset time.Duration

	mu   sync.Mutex
	last Timestamp
}

// NewClock returns a clock reading wall time from now (time.Now if nil)
// that accepts observed timestamps at most maxOffset ahead of it
// (DefaultMaxOffset if maxOffset <= 0).
func NewClock(now func() time.Time, maxOffset time.Duration) *Clock {
	if now == nil {
		now = time.Now
	}
	if maxOffset <= 0 {
		maxOffset = DefaultMaxOffset
	}
	return &Clock{now: now, maxOffset: maxOffset}
}

// MaxOffset is how far ahead of the wall clock an observed timestamp may be.
func (c *Clock) MaxOffset() time.Duration { return c.maxOffset }

// Now returns a timestamp greater than every one returned or observed
// before. It cannot wrap: observed timestamps are bounded by the wall
// clock plus MaxOffset, and the logical counter borrows from the
// microseconds.
func (c *Clock) Now() Timestamp {
	wall := At(c.now())
	c.mu.Lock()
	defer c.mu.Unlock()
	if wall > c.last {
		c.last = wall
	} else {
		c.last++
	}
	return c.last
}

// Check returns an error wrapping ErrFuture when t is more than MaxOffset
// ahead of the wall clock, and nil otherwise. The zero timestamp is never
// valid.
func (c *Clock) Check(t Timestamp) error {
	if t == 0 {
		return fmt.Errorf("%w: zero timestamp", ErrBadVersion)
	}
	wall := c.now()
	if ahead := t.Physical().Sub(wall); ahead > c.maxOffset {
		return fmt.Errorf("%w: %v ahead (limit %v)", ErrFuture, ahead.Round(time.Microsecond), c.maxOffset)
	}
	return nil
}

// Observe moves the clock past a timestamp seen from another node, so a
// coordinator with a slow wall clock still versions its next write after
// everything it has read. A timestamp that fails Check is refused and
// leaves the clock unchanged.
func (c *Clock) Observe(t Timestamp) error {
	if err := c.Check(t); err != nil {
		return err
	}
	c.mu.Lock()
	if t > c.last {
		c.last = t
	}
	c.mu.Unlock()
	return nil
}

// Version orders the writes of one block: newer Timestamp wins, equal
// timestamps are broken by coordinator name.
type Version struct {
	Timestamp Timestamp
	Node      string
}

// IsZero reports whether v is the zero version (no write).
func (v Version) IsZero() bool { return v.Timestamp == 0 && v.Node == "" }

// Compare returns -1, 0 or +1 as v is older than, equal to or newer than o.
func (v Version) Compare(o Version) int {
	switch {
	case v.Timestamp < o.Timestamp:
		return -1
	case v.Timestamp > o.Timestamp:
		return 1
	}
	return strings.Compare(v.Node, o.Node)
}

// Newer reports whether v is strictly newer than o.
func (v Version) Newer(o Version) bool { return v.Compare(o) > 0 }

// String formats v as "<timestamp>-<node>", the form used in HTTP headers.
func (v Version) String() string {
	return strconv.FormatUint(uint64(v.Timestamp), 10) + "-" + v.Node
}

// ErrBadVersion is returned by ParseVersion for malformed input.
var ErrBadVersion = errors.New("hlc: malformed version")

// MaxNodeLen bounds a coordinator name inside a version.
const MaxNodeLen = 255

// ParseVersion parses the String form.
func ParseVersion(s string) (Version, error) {
	ts, node, ok := strings.Cut(s, "-")
	if !ok || node == "" || len(node) > MaxNodeLen {
		return Version{}, fmt.Errorf("%w: %q", ErrBadVersion, s)
	}
	n, err := strconv.ParseUint(ts, 10, 64)
	if err != nil || n == 0 {
		return Version{}, fmt.Errorf("%w: %q", ErrBadVersion, s)
	}
	return Version{Timestamp: Timestamp(n), Node: node}, nil
}

// Add returns t advanced by n logical ticks.
func (t Timestamp) Add(n uint64) Timestamp { return t + Timestamp(n) }
