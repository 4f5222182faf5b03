package migration

import (
	"fmt"
	"strings"
	"testing"

	"github.com/goblocks/goblocks/node/membership"
	"github.com/goblocks/goblocks/node/ring"
)

func m(names ...string) []membership.Member {
	var out []membership.Member
	for _, n := range names {
		leaving := strings.HasSuffix(n, "!")
		n = strings.TrimSuffix(n, "!")
		out = append(out, membership.Member{Name: n, Addr: n + ":1", VNodes: 20, Leaving: leaving})
	}
	return out
}

func ringState(epoch int64, names ...string) *membership.RingState {
	return &membership.RingState{Epoch: epoch, Members: m(names...)}
}

func barrier(id string, from int64, target []string, parts ...string) *membership.Barrier {
	return &membership.Barrier{ID: id, FromEpoch: from, Target: m(target...), Participants: parts}
}

func parts(spec ...string) map[string]membership.Participant {
	out := map[string]membership.Participant{}
	for _, s := range spec {
		name, ready := strings.CutSuffix(s, "+")
		out[name] = membership.Participant{Name: name, Ready: ready}
	}
	return out
}

func describe(acts []Action) string {
	var out []string
	for _, a := range acts {
		s := a.Kind.String()
		switch a.Kind {
		case InitRing, SwapRing, Commit:
			s += fmt.Sprintf("(e%d:%s)", a.Ring.Epoch, strings.Join(membership.Names(a.Ring.Members), ","))
		case CreateBarrier:
			s += fmt.Sprintf("(%s->%s parts=%s)", a.Barrier.ID, strings.Join(membership.Names(a.Barrier.Target), ","), strings.Join(a.Barrier.Participants, ","))
		default:
			if a.Barrier.ID != "" {
				s += "(" + a.Barrier.ID + ")"
			}
		}
		out = append(out, s)
	}
	return strings.Join(out, " ")
}

func TestDecide(t *testing.T) {
	tests := []struct {
		name    string
		snap    membership.Snapshot
		local   Local
		want    string
		pending bool
	}{
		{"disconnected does nothing", membership.Snapshot{Members: m("a")}, Local{Self: "a"}, "", false},
		{"first node creates the ring", membership.Snapshot{Connected: true, Members: m("a")}, Local{Self: "a"},
			"InitRing(e1:a)", false},
		{"leaving members are not in a first ring", membership.Snapshot{Connected: true, Members: m("a", "b!")}, Local{Self: "a"},
			"InitRing(e1:a)", false},
		{"adopt committed ring", membership.Snapshot{Connected: true, Members: m("a", "b"), Ring: ringState(3, "a", "b")},
			Local{Self: "a"}, "SwapRing(e3:a,b)", false},
		{"steady state", membership.Snapshot{Connected: true, Members: m("a", "b"), Ring: ringState(3, "a", "b")},
			Local{Self: "a", ViewEpoch: 3}, "", false},
		{"join starts a round", membership.Snapshot{Connected: true, Members: m("a", "b", "c"), Ring: ringState(3, "a", "b")},
			Local{Self: "a", ViewEpoch: 3}, "CreateBarrier(r1->a,b,c parts=a,b,c)", false},
		{"crash starts a round without it", membership.Snapshot{Connected: true, Members: m("a", "c"), Ring: ringState(3, "a", "b", "c")},
			Local{Self: "a", ViewEpoch: 3}, "CreateBarrier(r1->a,c parts=a,c)", false},
		{"graceful leave: leaving node sends but is not a target", membership.Snapshot{Connected: true, Members: m("a", "b!", "c"), Ring: ringState(3, "a", "b", "c")},
			Local{Self: "a", ViewEpoch: 3}, "CreateBarrier(r1->a,c parts=a,b,c)", false},
		{"switch view first", membership.Snapshot{Connected: true, Members: m("a", "b", "c"), Ring: ringState(3, "a", "b"),
			Barrier: barrier("r1", 3, []string{"a", "b", "c"}, "a", "b", "c")}, Local{Self: "a", ViewEpoch: 3}, "SwitchView(r1)", false},
		{"register after switch", membership.Snapshot{Connected: true, Members: m("a", "b", "c"), Ring: ringState(3, "a", "b"),
			Barrier: barrier("r1", 3, []string{"a", "b", "c"}, "a", "b", "c")}, Local{Self: "a", ViewEpoch: 3, ViewRound: "r1"}, "Register(r1)", false},
		{"wait for every registration before scanning", membership.Snapshot{Connected: true, Members: m("a", "b", "c"), Ring: ringState(3, "a", "b"),
			Barrier: barrier("r1", 3, []string{"a", "b", "c"}, "a", "b", "c"), Participants: parts("a", "b")},
			Local{Self: "a", ViewEpoch: 3, ViewRound: "r1"}, "", false},
		{"all registered: transfer", membership.Snapshot{Connected: true, Members: m("a", "b", "c"), Ring: ringState(3, "a", "b"),
			Barrier: barrier("r1", 3, []string{"a", "b", "c"}, "a", "b", "c"), Participants: parts("a", "b", "c")},
			Local{Self: "a", ViewEpoch: 3, ViewRound: "r1"}, "StartTransfer(r1)", false},
		{"transfer running", membership.Snapshot{Connected: true, Members: m("a", "b", "c"), Ring: ringState(3, "a", "b"),
			Barrier: barrier("r1", 3, []string{"a", "b", "c"}, "a", "b", "c"), Participants: parts("a", "b", "c")},
			Local{Self: "a", ViewEpoch: 3, ViewRound: "r1", TransferRound: "r1"}, "", false},
		{"transfer done: ready", membership.Snapshot{Connected: true, Members: m("a", "b", "c"), Ring: ringState(3, "a", "b"),
			Barrier: barrier("r1", 3, []string{"a", "b", "c"}, "a", "b", "c"), Participants: parts("a", "b", "c")},
			Local{Self: "a", ViewEpoch: 3, ViewRound: "r1", TransferRound: "r1", TransferDone: true}, "MarkReady(r1)", false},
		{"all ready: commit", membership.Snapshot{Connected: true, Members: m("a", "b", "c"), Ring: ringState(3, "a", "b"),
			Barrier: barrier("r1", 3, []string{"a", "b", "c"}, "a", "b", "c"), Participants: parts("a+", "b+", "c+")},
			Local{Self: "c", ViewEpoch: 3, ViewRound: "r1"}, "Commit(e4:a,b,c)", false},
		{"join during round: pending", membership.Snapshot{Connected: true, Members: m("a", "b", "c", "d"), Ring: ringState(3, "a", "b"),
			Barrier: barrier("r1", 3, []string{"a", "b", "c"}, "a", "b", "c"), Participants: parts("a", "b", "c")},
			Local{Self: "a", ViewEpoch: 3, ViewRound: "r1", TransferRound: "r1"}, "", true},
		{"late joiner switches view but is no participant", membership.Snapshot{Connected: true, Members: m("a", "b", "c", "d"), Ring: ringState(3, "a", "b"),
			Barrier: barrier("r1", 3, []string{"a", "b", "c"}, "a", "b", "c"), Participants: parts("a", "b", "c")},
			Local{Self: "d"}, "SwapRing(e3:a,b) SwitchView(r1)", true},
		{"late joiner waits", membership.Snapshot{Connected: true, Members: m("a", "b", "c", "d"), Ring: ringState(3, "a", "b"),
			Barrier: barrier("r1", 3, []string{"a", "b", "c"}, "a", "b", "c"), Participants: parts("a", "b", "c")},
			Local{Self: "d", ViewEpoch: 3, ViewRound: "r1"}, "", true},
		{"participant died: abort", membership.Snapshot{Connected: true, Members: m("a", "c"), Ring: ringState(3, "a", "b"),
			Barrier: barrier("r1", 3, []string{"a", "b", "c"}, "a", "b", "c"), Participants: parts("a", "c")},
			Local{Self: "a", ViewEpoch: 3, ViewRound: "r1"}, "Abort(r1)", true},
		{"after abort: back to committed ring, new round", membership.Snapshot{Connected: true, Members: m("a", "c"), Ring: ringState(3, "a", "b")},
			Local{Self: "a", ViewEpoch: 3, ViewRound: "r1", TransferRound: "r1"}, "SwapRing(e3:a,b) CreateBarrier(r1->a,c parts=a,c)", false},
		{"after commit: swap", membership.Snapshot{Connected: true, Members: m("a", "b", "c"), Ring: ringState(4, "a", "b", "c")},
			Local{Self: "a", ViewEpoch: 3, ViewRound: "r1", TransferRound: "r1", TransferDone: true}, "SwapRing(e4:a,b,c)", false},
		{"after commit with pending change: swap and next round", membership.Snapshot{Connected: true, Members: m("a", "b", "c", "d"), Ring: ringState(4, "a", "b", "c")},
			Local{Self: "a", ViewEpoch: 3, ViewRound: "r1"}, "SwapRing(e4:a,b,c) CreateBarrier(r1->a,b,c,d parts=a,b,c,d)", false},
		{"leaving node out of the ring may exit", membership.Snapshot{Connected: true, Members: m("a", "b!", "c"), Ring: ringState(4, "a", "c")},
			Local{Self: "b", ViewEpoch: 4, Leaving: true}, "LeaveDone", false},
		{"whole cluster leaving: nobody to hand over to, exit", membership.Snapshot{Connected: true, Members: m("a!", "b!", "c!"), Ring: ringState(4, "a", "b", "c")},
			Local{Self: "b", ViewEpoch: 4, Leaving: true}, "LeaveDone", false},
		{"whole cluster leaving during a round: exit too", membership.Snapshot{Connected: true, Members: m("a!", "b!"), Ring: ringState(4, "a", "b"),
			Barrier: barrier("r1", 4, []string{"a", "b", "c"}, "a", "b"), Participants: parts("a", "b")},
			Local{Self: "a", ViewEpoch: 4, ViewRound: "r1", Leaving: true}, "LeaveDone", false},
		{"last member standing leaves while others already left", membership.Snapshot{Connected: true, Members: m("c!"), Ring: ringState(4, "a", "b", "c")},
			Local{Self: "c", ViewEpoch: 4, Leaving: true}, "LeaveDone", false},
		{"leaving node still in the ring waits", membership.Snapshot{Connected: true, Members: m("a", "b!", "c"), Ring: ringState(4, "a", "b", "c"),
			Barrier: barrier("r1", 4, []string{"a", "c"}, "a", "b", "c"), Participants: parts("a", "b", "c")},
			Local{Self: "b", ViewEpoch: 4, ViewRound: "r1", Leaving: true}, "StartTransfer(r1)", false},
		{"leaving node not part of a later round exits", membership.Snapshot{Connected: true, Members: m("a", "b!", "c", "d"), Ring: ringState(5, "a", "c"),
			Barrier: barrier("r2", 5, []string{"a", "c", "d"}, "a", "c", "d")},
			Local{Self: "b", ViewEpoch: 5, Leaving: true}, "LeaveDone SwitchView(r2)", false},
		{"barrier of the previous epoch: its deletion is on the way", membership.Snapshot{Connected: true, Members: m("a", "b"), Ring: ringState(5, "a", "b"),
			Barrier: barrier("r0", 4, []string{"a", "b"}, "a", "b")}, Local{Self: "a", ViewEpoch: 5}, "", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			acts, st := Decide(tc.snap, tc.local, func() string { return "r1" })
			if got := describe(acts); got != tc.want {
				t.Fatalf("actions:\n got: %s\nwant: %s", got, tc.want)
			}
			if st.Pending != tc.pending {
				t.Fatalf("pending = %v, want %v", st.Pending, tc.pending)
			}
		})
	}
}

// A new round's target keeps the committed members' token counts and gives a
// joining member tokens of its own; the first ring gets tokens too.
func TestDecideAllocatesTokens(t *testing.T) {
	first, _ := Decide(membership.Snapshot{Connected: true, Members: m("a", "b", "c")}, Local{Self: "a", RF: 3}, func() string { return "r1" })
	if len(first) != 1 || first[0].Kind != InitRing {
		t.Fatalf("first actions %v", first)
	}
	committed := first[0].Ring
	for _, mm := range committed.Members {
		if len(mm.Tokens) != mm.VNodes {
			t.Fatalf("first ring member %s has %d tokens for %d vnodes", mm.Name, len(mm.Tokens), mm.VNodes)
		}
	}
	committed.Epoch = 1
	acts, _ := Decide(membership.Snapshot{Connected: true, Members: m("a", "b", "c", "d"), Ring: &committed},
		Local{Self: "a", RF: 3, ViewEpoch: 1}, func() string { return "r2" })
	if len(acts) != 1 || acts[0].Kind != CreateBarrier {
		t.Fatalf("join actions %v", acts)
	}
	target := acts[0].Barrier.Target
	if err := (membership.Barrier{ID: "r2", Target: target, Participants: []string{"a"}}).Validate(); err != nil {
		t.Fatal(err)
	}
	for _, mm := range target {
		if i := memberIndex(committed.Members, mm.Name); i >= 0 {
			// Nudges may move some a little; none is added or dropped.
			if len(mm.Tokens) != len(committed.Members[i].Tokens) {
				t.Errorf("%s had %d tokens before the join, %d after", mm.Name, len(committed.Members[i].Tokens), len(mm.Tokens))
			}
		} else if len(mm.Tokens) != mm.VNodes {
			t.Errorf("joining %s has %d tokens for %d vnodes", mm.Name, len(mm.Tokens), mm.VNodes)
		}
	}
	r, err := ringOf(target)
	if err != nil {
		t.Fatal(err)
	}
	if s := r.Shares(3)["d"]; s < 0.2 || s > 0.3 {
		t.Errorf("joining d holds %.3f of the replicas, want about 0.25", s)
	}
}

// When a member leaves, its tokens go to the others: the ring keeps its
// number of tokens, the remaining members keep theirs (nudged a little at
// most), and the data that moves is close to what the leaver held.
func TestPlaceTargetHandsLeaversTokensOn(t *testing.T) {
	committed := placeTarget(nil, m("a", "b", "c", "d", "e"), 3)
	target := placeTarget(committed, m("a", "b", "c", "e"), 3)
	before, after := 0, 0
	for _, mm := range committed {
		before += len(mm.Tokens)
		if i := memberIndex(target, mm.Name); i >= 0 && len(target[i].Tokens) < len(mm.Tokens) {
			t.Fatalf("%s had %d tokens, has %d", mm.Name, len(mm.Tokens), len(target[i].Tokens))
		}
	}
	for _, mm := range target {
		after += len(mm.Tokens)
	}
	if before != after {
		t.Fatalf("tokens before %d, after %d: the leaver's tokens must all be handed on", before, after)
	}
	old, err := ringOf(committed)
	if err != nil {
		t.Fatal(err)
	}
	now, err := ringOf(target)
	if err != nil {
		t.Fatal(err)
	}
	var moved float64
	for _, mv := range ring.Diff(old, now, 3) {
		moved += mv.Range.Fraction() * float64(len(mv.To))
	}
	if held := old.Shares(3)["d"] * 3; moved > 1.1*held {
		t.Fatalf("%.4f of the key space moved for the %.4f d held", moved, held)
	}
	if err := (membership.Barrier{ID: "r", Target: target, Participants: []string{"a"}}).Validate(); err != nil {
		t.Fatal(err)
	}
}
