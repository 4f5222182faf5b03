package replication

import (
	"testing"
)

func TestQuorumDecisions(t *testing.T) {
	type outcome struct {
		name string
		ok   bool
	}
	tests := []struct {
		name     string
		cl       Consistency
		old, new []string
		outcomes []outcome
		done, ok bool
	}{
		{"quorum needs two", Quorum, []string{"a", "b", "c"}, nil, []outcome{{"a", true}}, false, false},
		{"quorum reached", Quorum, []string{"a", "b", "c"}, nil, []outcome{{"a", true}, {"c", true}}, true, true},
		{"quorum one down", Quorum, []string{"a", "b", "c"}, nil, []outcome{{"b", false}, {"a", true}, {"c", true}}, true, true},
		{"quorum lost", Quorum, []string{"a", "b", "c"}, nil, []outcome{{"b", false}, {"c", false}}, true, false},
		{"all waits for every one", All, []string{"a", "b", "c"}, nil, []outcome{{"a", true}, {"b", true}}, false, false},
		{"all fails on one failure", All, []string{"a", "b", "c"}, nil, []outcome{{"a", false}}, true, false},
		{"one", One, []string{"a", "b", "c"}, nil, []outcome{{"c", true}}, true, true},
		{"migration needs both sets", Quorum, []string{"a", "b", "c"}, []string{"a", "b", "d"},
			[]outcome{{"a", true}, {"c", true}}, false, false},
		{"migration shared members count twice", Quorum, []string{"a", "b", "c"}, []string{"a", "b", "d"},
			[]outcome{{"a", true}, {"b", true}}, true, true},
		{"migration new set lost", Quorum, []string{"a", "b", "c"}, []string{"a", "d", "e"},
			[]outcome{{"a", true}, {"b", true}, {"d", false}, {"e", false}}, true, false},
		{"migration old set reached, new waits", Quorum, []string{"a", "b", "c"}, []string{"a", "d", "e"},
			[]outcome{{"b", true}, {"c", true}, {"d", true}}, false, false},
		{"no replicas", Quorum, nil, nil, nil, true, false},
		{"fewer members than rf", Quorum, []string{"a"}, nil, []outcome{{"a", true}}, true, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			q := newQuorum(tc.cl.Required, tc.old, tc.new)
			for _, o := range tc.outcomes {
				q.record(o.name, o.ok)
			}
			done, ok := q.decided()
			if done != tc.done || ok != tc.ok {
				t.Fatalf("decided() = %v, %v; want %v, %v", done, ok, tc.done, tc.ok)
			}
		})
	}
}

func TestQuorumShort(t *testing.T) {
	tests := []struct {
		name     string
		cl       Consistency
		old, new []string
		acks     []string
		inflight []string
		short    bool
	}{
		{"nothing asked", Quorum, []string{"a", "b", "c"}, nil, nil, nil, true},
		{"one in flight", Quorum, []string{"a", "b", "c"}, nil, nil, []string{"a"}, true},
		{"two in flight", Quorum, []string{"a", "b", "c"}, nil, nil, []string{"a", "b"}, false},
		{"one acked, one in flight", Quorum, []string{"a", "b", "c"}, nil, []string{"a"}, []string{"c"}, false},
		{"one acked, none in flight", Quorum, []string{"a", "b", "c"}, nil, []string{"a"}, nil, true},
		{"all needs three", All, []string{"a", "b", "c"}, nil, []string{"a"}, []string{"b"}, true},
		{"one needs one", One, []string{"a", "b", "c"}, nil, nil, []string{"b"}, false},
		{"in flight outside the sets counts nowhere", Quorum, []string{"a", "b", "c"}, nil, nil, []string{"a", "x"}, true},
		{"migration: old set covered, new set short", Quorum, []string{"a", "b", "c"}, []string{"a", "d", "e"},
			nil, []string{"a", "b"}, true},
		{"migration: shared and one of each", Quorum, []string{"a", "b", "c"}, []string{"a", "d", "e"},
			[]string{"a"}, []string{"b", "d"}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			q := newQuorum(tc.cl.Required, tc.old, tc.new)
			for _, a := range tc.acks {
				q.record(a, true)
			}
			inflight := map[string]bool{}
			for _, m := range tc.inflight {
				inflight[m] = true
			}
			if got := q.short(inflight); got != tc.short {
				t.Fatalf("short() = %v, want %v", got, tc.short)
			}
		})
	}
}

func TestUnionNames(t *testing.T) {
	got := unionNames([]string{"a", "b", "c"}, []string{"b", "d"}, nil)
	want := []string{"a", "b", "c", "d"}
	if len(got) != len(want) {
		t.Fatalf("got %v", got)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("got %v, want %v", got, want)
		}
	}
}
