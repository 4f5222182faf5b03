package antientropy

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/goblocks/goblocks/node/ring"
	"github.com/goblocks/goblocks/node/storage"
	"github.com/goblocks/goblocks/node/storage/memory"
	"github.com/goblocks/goblocks/node/wire"
)

// fakePeers routes calls to in-process nodes by address.
type fakePeers struct {
	nodes map[string]*Local
}

func (f fakePeers) node(addr string) (*Local, error) {
	l, ok := f.nodes[addr]
	if !ok {
		return nil, errors.New("unreachable")
	}
	return l, nil
}

func (f fakePeers) AntiEntropyDigests(_ context.Context, addr, self, ringID string) ([]uint64, error) {
	l, err := f.node(addr)
	if err != nil {
		return nil, err
	}
	return l.Digests(self, ringID)
}

func (f fakePeers) AntiEntropyEntries(_ context.Context, addr, self, ringID string, buckets []int) ([]Entry, error) {
	l, err := f.node(addr)
	if err != nil {
		return nil, err
	}
	return l.Entries(self, ringID, buckets)
}

func (f fakePeers) FetchBatch(_ context.Context, addr string, ids []string) ([]wire.FetchReply, error) {
	l, err := f.node(addr)
	if err != nil {
		return nil, err
	}
	out := make([]wire.FetchReply, len(ids))
	for i, id := range ids {
		rec, err := l.Engine.Get(id)
		switch {
		case err == nil:
			out[i] = wire.FetchReply{Status: wire.FetchFound, Record: rec}
		case errors.Is(err, storage.ErrNotFound):
			out[i].Status = wire.FetchAbsent
		default:
			out[i].Status = wire.FetchCorrupt
		}
	}
	return out, nil
}

func (f fakePeers) ApplyBatch(_ context.Context, addr string, items []storage.Item) ([]wire.ApplyResult, error) {
	l, err := f.node(addr)
	if err != nil {
		return nil, err
	}
	applied, err := l.Engine.ApplyBatch(items)
	out := make([]wire.ApplyResult, len(applied))
	for i, ok := range applied {
		out[i].Applied = ok
	}
	return out, err
}

func TestRoundConvergesTwoReplicas(t *testing.T) {
	r := testRing(t, "n0", "n1")
	view := func() (*ring.Ring, int, bool) { return r, 2, false }
	e0, e1 := memory.New(), memory.New()
	defer e0.Close()
	defer e1.Close()
	locals := map[string]*Local{
		"n0:1": {Self: "n0", Engine: e0, View: view},
		"n1:1": {Self: "n1", Engine: e1, View: view},
	}
	data := make([]byte, 4096)
	apply := func(e storage.Engine, id string, rec storage.Record) {
		t.Helper()
		if _, err := e.Apply(id, rec); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 300 {
		id := fmt.Sprintf("blk-%03d", i)
		old, cur := storage.NewRecord(data, v(uint64(10+i), "n0")), storage.NewRecord(data, v(uint64(1000+i), "n1"))
		switch i % 6 {
		case 0: // in sync
			apply(e0, id, cur)
			apply(e1, id, cur)
		case 1: // only n0
			apply(e0, id, cur)
		case 2: // only n1
			apply(e1, id, cur)
		case 3: // n0 older
			apply(e0, id, old)
			apply(e1, id, cur)
		case 4: // n1 missed a delete
			apply(e0, id, storage.NewTombstone(v(uint64(2000+i), "n0")))
			apply(e1, id, old)
		case 5: // a stale copy at n1 does not count and is made owned again
			apply(e0, id, cur)
			rec := cur
			apply(e1, id, rec)
			if _, err := e1.MarkStale(id, rec.Version, rec.Version.Timestamp.Physical()); err != nil {
				t.Fatal(err)
			}
		}
	}
	m := NewMetrics(nil)
	run := NewRunner(Options{Self: "n0", Engine: e0, Peers: fakePeers{nodes: locals}, View: view, Rate: 1 << 20, Metrics: m})
	st, err := run.Round(context.Background(), ring.Member{Name: "n1", Addr: "n1:1"})
	if err != nil {
		t.Fatal(err)
	}
	if st.Mismatched == 0 || st.Repaired != 250 {
		t.Errorf("round: %+v, want 250 records repaired", st)
	}
	for i := range 300 {
		id := fmt.Sprintf("blk-%03d", i)
		a, errA := e0.GetMeta(id)
		b, errB := e1.GetMeta(id)
		if errA != nil || errB != nil || a.Version != b.Version || a.Tombstone != b.Tombstone || b.StaleSince != a.StaleSince {
			t.Fatalf("%s not converged: n0 %+v %v, n1 %+v %v", id, a, errA, b, errB)
		}
	}
	st, err = run.Round(context.Background(), ring.Member{Name: "n1", Addr: "n1:1"})
	if err != nil || st.Mismatched != 0 {
		t.Fatalf("second round: %+v %v, want in sync", st, err)
	}
	if got := testutil.ToFloat64(m.Rounds.WithLabelValues(ResultInSync)); got != 1 {
		t.Errorf("in_sync rounds = %v", got)
	}
	if got := testutil.ToFloat64(m.BlocksRepaired); got != 250 {
		t.Errorf("blocks repaired = %v", got)
	}
}

func TestLocalRejectsOtherRings(t *testing.T) {
	r := testRing(t, "n0", "n1")
	migrating := false
	l := &Local{Self: "n0", Engine: memory.New(), View: func() (*ring.Ring, int, bool) { return r, 2, migrating }}
	defer l.Engine.Close()
	id := RingID(r, 2)
	for _, tc := range []struct {
		name, peer, ring string
		migrating        bool
		want             error
	}{
		{"ok", "n1", id, false, nil},
		{"other ring", "n1", RingID(r, 1), false, ErrRingMismatch},
		{"migrating", "n1", id, true, ErrMigrating},
		{"unknown peer", "n7", id, false, ErrUnknownPeer},
		{"itself", "n0", id, false, ErrUnknownPeer},
	} {
		migrating = tc.migrating
		_, err := l.Digests(tc.peer, tc.ring)
		if !errors.Is(err, tc.want) || (tc.want == nil && err != nil) {
			t.Errorf("%s: %v, want %v", tc.name, err, tc.want)
		}
	}
	if _, err := l.Entries("n1", id, []int{Buckets}); !errors.Is(err, ErrBadBuckets) {
		t.Errorf("bucket out of range: %v", err)
	}
}
