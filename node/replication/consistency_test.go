package replication

import "testing"

func TestConsistencyRequired(t *testing.T) {
	for _, tc := range []struct {
		c       Consistency
		n, want int
	}{{One, 3, 1}, {Quorum, 3, 2}, {All, 3, 3}, {Quorum, 4, 3}, {Quorum, 1, 1}, {One, 0, 0}, {Quorum, 2, 2}} {
		if got := tc.c.Required(tc.n); got != tc.want {
			t.Errorf("%s.Required(%d) = %d, want %d", tc.c, tc.n, got, tc.want)
		}
	}
}
