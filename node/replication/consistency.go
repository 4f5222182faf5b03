package replication

import (
	"fmt"
	"strings"
)

// Consistency is the number of replicas a request waits for: one, a
// majority (quorum) or all of the owners. Required turns it into a count
// for the quorum tracker.
type Consistency string

// Consistency levels.
const (
	One    Consistency = "one"
	Quorum Consistency = "quorum"
	All    Consistency = "all"
)

// ParseConsistency accepts one, quorum or all (case-insensitive).
func ParseConsistency(s string) (Consistency, error) {
	switch c := Consistency(strings.ToLower(s)); c {
	case One, Quorum, All:
		return c, nil
	}
	return "", fmt.Errorf("consistency %q: want one, quorum or all", s)
}

// Required returns how many of n replicas must answer.
func (c Consistency) Required(n int) int {
	switch c {
	case One:
		return min(1, n)
	case All:
		return n
	}
	return n/2 + 1
}
