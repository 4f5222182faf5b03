package replication

import (
	"bytes"
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/rs/zerolog"

	"github.com/goblocks/goblocks/node/hlc"
	"github.com/goblocks/goblocks/node/ring"
	"github.com/goblocks/goblocks/node/storage"
	"github.com/goblocks/goblocks/node/storage/memory"
)

// This file tests the rules that make quorum operations linearizable:
// writes re-stamped above versions replicas hold, reads that write the
// newest version back before answering, and reads that do not wait for a
// stalled replica. Three replicas live in memory engines behind lzPeers;
// each test builds coordinators named after ring members.

var lzMembers = []ring.Member{
	{Name: "n1", Addr: "n1:1", VNodes: ring.DefaultVNodes},
	{Name: "n2", Addr: "n2:1", VNodes: ring.DefaultVNodes},
	{Name: "n3", Addr: "n3:1", VNodes: ring.DefaultVNodes},
}

// lzPeers serves every member's engine by address. stall, when set for an
// address, holds that replica's Fetch until the call's context ends (a
// paused process: no error, no answer).
type lzPeers struct {
	engines map[string]*memory.Engine
	mu      sync.Mutex
	stall   map[string]bool
}

func newLZPeers() *lzPeers {
	p := &lzPeers{engines: map[string]*memory.Engine{}, stall: map[string]bool{}}
	for _, m := range lzMembers {
		p.engines[m.Addr] = memory.New()
	}
	return p
}

func (p *lzPeers) stalled(addr string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.stall[addr]
}

func (p *lzPeers) Apply(_ context.Context, addr, id string, rec storage.Record) (hlc.Version, error) {
	e := p.engines[addr]
	ok, err := e.Apply(id, rec)
	if err != nil || ok {
		return rec.Version, err
	}
	m, err := e.GetMeta(id)
	if err != nil {
		return hlc.Version{}, nil
	}
	return m.Version, nil
}

func (p *lzPeers) Fetch(ctx context.Context, addr, id string) (storage.Record, error) {
	if p.stalled(addr) {
		<-ctx.Done()
		return storage.Record{}, ctx.Err()
	}
	return p.engines[addr].Get(id)
}

func (p *lzPeers) FetchMeta(ctx context.Context, addr, id string) (storage.Meta, error) {
	rec, err := p.Fetch(ctx, addr, id)
	return rec.Meta(), err
}

func (p *lzPeers) FetchDigest(ctx context.Context, addr, id string) (storage.Meta, error) {
	return p.FetchMeta(ctx, addr, id)
}

// lzCoordinator is member self's coordinator over the shared replicas,
// with its wall clock read from wall.
func lzCoordinator(t *testing.T, p *lzPeers, self string, wall func() time.Time, mode ReadRepairMode) (*Coordinator, *Metrics) {
	t.Helper()
	rg, err := ring.New(lzMembers)
	if err != nil {
		t.Fatal(err)
	}
	var addr string
	for _, m := range lzMembers {
		if m.Name == self {
			addr = m.Addr
		}
	}
	metrics := NewMetrics(nil)
	c := New(Options{
		Self: self, Engine: p.engines[addr], Peers: p, Clock: hlc.NewClock(wall, time.Hour),
		ReadConsistency: Quorum, WriteConsistency: Quorum,
		ReplicaTimeout: time.Minute, Logger: zerolog.Nop(), Metrics: metrics, ReadRepair: mode,
	})
	c.SetView(ring.View{Current: rg, RF: 3})
	t.Cleanup(c.Close)
	return c, metrics
}

func lzBlock(b byte) []byte { return bytes.Repeat([]byte{b}, 64) }

// The data-loss case of the consistency issue: write A through n3 is
// acknowledged; the same client's next write B goes through n1, whose wall
// clock reads the same instant (or an earlier one: skew) and who has never
// seen A's version. Stamped from its clock, B would sort lower by
// timestamp or by name; it must still win, and every later read must
// return it.
func TestLaterWriteWinsWhateverTheClocks(t *testing.T) {
	at := time.UnixMilli(1_700_000_000_000)
	for _, tc := range []struct {
		name   string
		n1Skew time.Duration // n1's wall clock relative to n3's
		del    bool
	}{
		{name: "same microsecond, lower name", n1Skew: 0},
		{name: "n1 a millisecond behind", n1Skew: -time.Millisecond},
		{name: "n1 ten seconds behind", n1Skew: -10 * time.Second},
		{name: "delete after put, n1 behind", n1Skew: -time.Second, del: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := newLZPeers()
			n3, _ := lzCoordinator(t, p, "n3", func() time.Time { return at }, Blocking)
			n1, _ := lzCoordinator(t, p, "n1", func() time.Time { return at.Add(tc.n1Skew) }, Blocking)
			ctx := context.Background()
			va, err := n3.Put(ctx, "blk", lzBlock('A'), "")
			if err != nil {
				t.Fatal(err)
			}
			var vb hlc.Version
			if tc.del {
				vb, err = n1.Delete(ctx, "blk", "")
			} else {
				vb, err = n1.Put(ctx, "blk", lzBlock('B'), "")
			}
			if err != nil {
				t.Fatal(err)
			}
			if !vb.Newer(va) {
				t.Fatalf("acknowledged later write has version %s, not newer than %s", vb, va)
			}
			for _, c := range []*Coordinator{n1, n3} {
				rec, err := c.Get(ctx, "blk", "")
				switch {
				case tc.del && !errors.Is(err, storage.ErrNotFound):
					t.Fatalf("read after delete: %v, %v", rec.Version, err)
				case !tc.del && (err != nil || rec.Data[0] != 'B'):
					t.Fatalf("read returned %q %s, %v; want B", rec.Data[:1], rec.Version, err)
				}
			}
		})
	}
}

// Without the re-stamp, the tie above loses the acknowledged write: the
// test's premise holds (the naive version really is older).
func TestNaiveVersionWouldLoseTheTie(t *testing.T) {
	at := time.UnixMilli(1_700_000_000_000)
	a := hlc.Version{Timestamp: hlc.NewClock(func() time.Time { return at }, 0).Now(), Node: "n3"}
	b := hlc.Version{Timestamp: hlc.NewClock(func() time.Time { return at }, 0).Now(), Node: "n1"}
	if b.Newer(a) {
		t.Fatal("premise: a same-instant version of n1 must sort below n3's")
	}
}

// A read whose replies disagree writes the newest version back to a quorum
// before answering: afterwards a quorum holds it, so a read through any
// other quorum cannot go back to the older value.
func TestReadWritesBackBeforeAnswering(t *testing.T) {
	for _, mode := range []ReadRepairMode{Blocking, Background} {
		t.Run(string(mode), func(t *testing.T) {
			p := newLZPeers()
			old := storage.NewRecord(lzBlock('O'), hlc.Version{Timestamp: 1000, Node: "n2"})
			newer := storage.NewRecord(lzBlock('N'), hlc.Version{Timestamp: 2000, Node: "n2"})
			// Only n1 (the coordinator, asked first) has the newer write.
			for addr, rec := range map[string]storage.Record{"n1:1": newer, "n2:1": old, "n3:1": old} {
				if _, err := p.engines[addr].Apply("blk", rec); err != nil {
					t.Fatal(err)
				}
			}
			c, m := lzCoordinator(t, p, "n1", nil, mode)
			rec, err := c.Get(context.Background(), "blk", "")
			if err != nil || rec.Version != newer.Version {
				t.Fatalf("read %v, %v", rec.Version, err)
			}
			holders := 0
			for _, e := range p.engines {
				if m, err := e.GetMeta("blk"); err == nil && m.Version == newer.Version {
					holders++
				}
			}
			if mode == Blocking {
				if holders < 2 {
					t.Fatalf("read answered with %s held by %d replicas; want a quorum", newer.Version, holders)
				}
				if got := testutil.ToFloat64(m.WriteBacks.WithLabelValues("ok")); got != 1 {
					t.Fatalf("write-backs = %v", got)
				}
			} else if got := testutil.ToFloat64(m.WriteBacks.WithLabelValues("ok")); got != 0 {
				t.Fatalf("background mode wrote back synchronously (%v)", got)
			}
		})
	}
}

// A replica that is paused (its fetch neither answers nor fails) does not
// hold a quorum read until the replica timeout (a minute here): past the
// observed latency the read asks the third owner.
func TestSpeculativeReadAroundAStalledReplica(t *testing.T) {
	p := newLZPeers()
	c, m := lzCoordinator(t, p, "n1", nil, Blocking)
	ctx := context.Background()
	if _, err := c.Put(ctx, "blk", lzBlock('X'), ""); err != nil {
		t.Fatal(err)
	}
	for _, addr := range []string{"n2:1", "n3:1"} {
		p.mu.Lock()
		p.stall = map[string]bool{addr: true}
		p.mu.Unlock()
		rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		rec, err := c.Get(rctx, "blk", "")
		cancel()
		if err != nil || rec.Data[0] != 'X' {
			t.Fatalf("%s stalled: read %v", addr, err)
		}
	}
	if got := testutil.ToFloat64(m.SpeculativeReads); got < 1 {
		t.Fatalf("speculative reads = %v", got)
	}
	p.mu.Lock()
	p.stall = map[string]bool{}
	p.mu.Unlock()
}
