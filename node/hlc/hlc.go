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

// logicalBits is the width of the logical counter in a Timestamp. 16 bits
// allow 65,536 versions per millisecond per coordinator before the clock
// borrows from the next millisecond.
const logicalBits = 16

// Timestamp packs wall-clock milliseconds (upper 48 bits) and a logical
// counter (lower 16 bits). Comparing Timestamps as integers orders them.
type Timestamp uint64

// Physical returns the wall-clock part.
func (t Timestamp) Physical() time.Time {
	return time.UnixMilli(int64(t >> logicalBits))
}

// Logical returns the logical counter.
func (t Timestamp) Logical() uint16 { return uint16(t) }

func pack(ms int64, logical uint64) Timestamp {
	return Timestamp(uint64(ms)<<logicalBits | logical)
}

// Clock hands out strictly increasing Timestamps that never fall behind
// any timestamp it has observed. It is safe for concurrent use.
type Clock struct {
	now func() time.Time

	mu   sync.Mutex
	last Timestamp
}

// NewClock returns a clock reading wall time from now (time.Now if nil).
func NewClock(now func() time.Time) *Clock {
	if now == nil {
		now = time.Now
	}
	return &Clock{now: now}
}

// Now returns a timestamp greater than every one returned or observed
// before.
func (c *Clock) Now() Timestamp {
	wall := pack(c.now().UnixMilli(), 0)
	c.mu.Lock()
	defer c.mu.Unlock()
	if wall > c.last {
		c.last = wall
	} else {
		c.last++
	}
	return c.last
}

// Observe moves the clock past a timestamp seen from another node, so a
// coordinator with a slow wall clock still versions its next write after
// everything it has read.
func (c *Clock) Observe(t Timestamp) {
	c.mu.Lock()
	if t > c.last {
		c.last = t
	}
	c.mu.Unlock()
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
