package replication

// quorum counts replica acknowledgements against one or two replica sets.
// Outside a migration there is one set (the block's owners). During a
// migration a write must reach the required count in the old owners AND in
// the new owners, so that an acknowledged write is readable by quorum both
// before and after the ring swap (Cassandra's pending ranges, made strict).
//
// It is a plain value with no goroutines or I/O: the coordinator feeds it
// outcomes and asks whether the request is decided.
type quorum struct {
	sets []ackSet
}

type ackSet struct {
	members []string
	need    int
	acks    int
	fails   int
}

// newQuorum builds a tracker: need(n) says how many of n members must ack.
// A nil or empty second set is ignored.
func newQuorum(need func(n int) int, sets ...[]string) *quorum {
	q := &quorum{}
	for _, s := range sets {
		if len(s) == 0 {
			continue
		}
		q.sets = append(q.sets, ackSet{members: s, need: need(len(s))})
	}
	return q
}

// record notes one replica's outcome. A replica in both sets counts in both.
func (q *quorum) record(name string, ok bool) {
	for i := range q.sets {
		s := &q.sets[i]
		for _, m := range s.members {
			if m != name {
				continue
			}
			if ok {
				s.acks++
			} else {
				s.fails++
			}
		}
	}
}

// decided reports whether the outcome is known and, if so, whether the
// request succeeded: every set has its acks, or some set can no longer get
// them.
func (q *quorum) decided() (done, ok bool) {
	if len(q.sets) == 0 {
		return true, false
	}
	all := true
	for _, s := range q.sets {
		if len(s.members)-s.fails < s.need {
			return true, false
		}
		if s.acks < s.need {
			all = false
		}
	}
	return all, all
}

// short reports whether some set would miss its need even if every
// member in flight acked: the caller asks another member. A coordinator
// that asks only as many replicas as the decision needs (the version
// query, reads) calls it after each answer.
func (q *quorum) short(inflight map[string]bool) bool {
	for _, s := range q.sets {
		n := s.acks
		for _, m := range s.members {
			if inflight[m] {
				n++
			}
		}
		if n < s.need {
			return true
		}
	}
	return false
}

// unionNames returns the union of the sets' members in first-seen order.
func unionNames(sets ...[]string) []string {
	var out []string
	seen := make(map[string]bool, 6)
	for _, s := range sets {
		for _, m := range s {
			if !seen[m] {
				seen[m] = true
				out = append(out, m)
			}
		}
	}
	return out
}
