package hints

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/rs/zerolog"

	"github.com/goblocks/goblocks/node/hlc"
	"github.com/goblocks/goblocks/node/storage"
	"github.com/goblocks/goblocks/node/storage/memory"
	"github.com/goblocks/goblocks/node/wire"
)

// fakeSender applies batches to one memory engine per address.
type fakeSender struct {
	mu    sync.Mutex
	down  map[string]bool
	nodes map[string]*memory.Engine
	calls int
}

func (f *fakeSender) ApplyBatch(_ context.Context, addr string, items []storage.Item) ([]wire.ApplyResult, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls++
	if f.down[addr] {
		return nil, errors.New("connection refused")
	}
	return results(f.nodes[addr].ApplyBatch(items))
}

// results turns an engine's batch outcome into what a peer answers.
func results(applied []bool, err error) ([]wire.ApplyResult, error) {
	out := make([]wire.ApplyResult, len(applied))
	for i, ok := range applied {
		out[i].Applied = ok
	}
	return out, err
}

var t0 = time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)

func rec(t *testing.T, ms int64, b byte) storage.Record {
	t.Helper()
	data := make([]byte, 16)
	data[0] = b
	ts := hlc.At(time.UnixMilli(ms))
	return storage.NewRecord(data, hlc.Version{Timestamp: ts, Node: "coord"})
}

func setup(t *testing.T) (*Hints, *fakeSender, *time.Time) {
	now := t0
	f := &fakeSender{down: map[string]bool{}, nodes: map[string]*memory.Engine{"b:1": memory.New(), "c:1": memory.New()}}
	h := New(Options{
		Engine: memory.New(),
		Sender: f,
		Resolve: func(name string) (string, bool) {
			addr, ok := map[string]string{"b": "b:1", "c": "c:1"}[name]
			return addr, ok
		},
		Window: time.Hour,
		Logger: zerolog.Nop(),
		Now:    func() time.Time { return now },
	})
	return h, f, &now
}

func TestDeliversWhenTheReplicaReturns(t *testing.T) {
	h, f, _ := setup(t)
	f.down["b:1"] = true
	ms := t0.UnixMilli()
	for i := 0; i < 300; i++ { // more than one batch
		h.Add("b", fmt.Sprintf("blk-%03d", i), rec(t, ms, 1))
	}
	h.Add("c", "blk-000", rec(t, ms, 1))
	// A newer write for the same block replaces the older hint.
	h.Add("b", "blk-000", rec(t, ms+5, 2))

	n, err := h.Deliver(context.Background())
	if err == nil || n != 1 {
		t.Fatalf("with b down: delivered %d, err %v; want 1 (to c) and an error", n, err)
	}
	if got := testutil.ToFloat64(h.o.Metrics.Pending); got != 300 {
		t.Fatalf("pending %v, want 300", got)
	}
	f.down["b:1"] = false
	if n, err := h.Deliver(context.Background()); err != nil || n != 300 {
		t.Fatalf("delivered %d, %v; want 300", n, err)
	}
	got, err := f.nodes["b:1"].Get("blk-000")
	if err != nil || got.Data[0] != 2 {
		t.Fatalf("b holds %v, %v; want the newest hint", got.Data, err)
	}
	if f.nodes["b:1"].Count() != 300 {
		t.Fatalf("b holds %d blocks", f.nodes["b:1"].Count())
	}
	if n, _ := h.Deliver(context.Background()); n != 0 || testutil.ToFloat64(h.o.Metrics.Pending) != 0 {
		t.Fatalf("hints left after delivery: %d", n)
	}
	if d := testutil.ToFloat64(h.o.Metrics.Delivered); d != 301 {
		t.Fatalf("delivered counter %v", d)
	}
}

func TestDropsHintsPastTheWindow(t *testing.T) {
	h, f, now := setup(t)
	f.down["b:1"] = true
	h.Add("b", "old", rec(t, t0.UnixMilli(), 1))
	*now = t0.Add(2 * time.Hour)
	h.Add("b", "new", rec(t, now.UnixMilli(), 1))
	if _, err := h.Deliver(context.Background()); err == nil {
		t.Fatal("b is down")
	}
	if got := testutil.ToFloat64(h.o.Metrics.Dropped); got != 1 {
		t.Fatalf("dropped %v, want 1", got)
	}
	f.down["b:1"] = false
	if n, err := h.Deliver(context.Background()); err != nil || n != 1 {
		t.Fatalf("delivered %d, %v", n, err)
	}
	if _, err := f.nodes["b:1"].Get("old"); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("expired hint was delivered: %v", err)
	}
}

func TestUnknownTargetWaits(t *testing.T) {
	h, f, _ := setup(t)
	h.Add("z", "blk", rec(t, t0.UnixMilli(), 1))
	if n, err := h.Deliver(context.Background()); n != 0 || err != nil {
		t.Fatalf("delivered %d, %v", n, err)
	}
	if f.calls != 0 || testutil.ToFloat64(h.o.Metrics.Pending) != 1 {
		t.Fatalf("calls %d, pending %v", f.calls, testutil.ToFloat64(h.o.Metrics.Pending))
	}
}

// A hint stored while its delivery is in flight (a newer write) is not
// lost by the removal of the delivered version.
func TestNewerHintDuringDeliverySurvives(t *testing.T) {
	h, f, _ := setup(t)
	ms := t0.UnixMilli()
	h.Add("b", "blk", rec(t, ms, 1))
	f.nodes["b:1"] = memory.New()
	h.o.Sender = senderFunc(func(ctx context.Context, addr string, items []storage.Item) ([]wire.ApplyResult, error) {
		h.Add("b", "blk", rec(t, ms+1, 2)) // arrives mid-delivery
		return results(f.nodes[addr].ApplyBatch(items))
	})
	if n, _ := h.Deliver(context.Background()); n != 0 {
		t.Fatalf("removed %d hints; the newer one must stay", n)
	}
	h.o.Sender = f
	if n, _ := h.Deliver(context.Background()); n != 1 {
		t.Fatalf("second pass delivered %d", n)
	}
	if got, _ := f.nodes["b:1"].Get("blk"); got.Data[0] != 2 {
		t.Fatalf("b holds %v", got.Data)
	}
}

type senderFunc func(ctx context.Context, addr string, items []storage.Item) ([]wire.ApplyResult, error)

func (s senderFunc) ApplyBatch(ctx context.Context, addr string, items []storage.Item) ([]wire.ApplyResult, error) {
	return s(ctx, addr, items)
}
