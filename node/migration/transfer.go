package migration

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/goblocks/goblocks/node/pace"
	"github.com/goblocks/goblocks/node/ring"
	"github.com/goblocks/goblocks/node/storage"
	"github.com/goblocks/goblocks/node/wire"
)

// Sender streams a batch of records to a peer, which applies them if
// newer (transport.Client). Safe for concurrent use.
type Sender interface {
	ApplyBatch(ctx context.Context, addr string, items []storage.Item) ([]wire.ApplyResult, error)
}

// Progress counts a transfer. Safe for concurrent use.
type Progress struct {
	PlannedBlocks atomic.Int64
	SentBlocks    atomic.Int64
	SentBytes     atomic.Int64
}

// sendPlan is the part of ring.Diff(old, target) this node executes: the
// arcs whose old owners include it, each with the new owners it must send
// to. Every old owner sends (not one designated sender): a
// quorum-acknowledged write may have missed any single old owner, and
// receivers apply by version, so the redundancy is what makes the
// hand-over lossless.
type sendPlan struct {
	moves []ring.Move // in ring order (ascending Range.End)
	dests [][]ring.Member
}

func newSendPlan(old, target *ring.Ring, rf int, self string) sendPlan {
	var p sendPlan
	for _, mv := range ring.Diff(old, target, rf) {
		if !slices.Contains(mv.From, self) {
			continue
		}
		to := make([]ring.Member, 0, len(mv.To))
		for _, name := range mv.To {
			if m, ok := target.Member(name); ok {
				to = append(to, m)
			}
		}
		p.moves = append(p.moves, mv)
		p.dests = append(p.dests, to)
	}
	return p
}

// destinations returns the new owners that must receive this node's copy
// of id; nil when id's owners gain nobody or this node was not one of them.
func (p sendPlan) destinations(id string) []ring.Member {
	if len(p.moves) == 0 {
		return nil
	}
	pos := ring.Position(id)
	// Arcs are disjoint and ordered by their end: the first arc ending at
	// or after pos is the only candidate, except for the arc that wraps
	// past zero, which comes first.
	i := sort.Search(len(p.moves), func(i int) bool { return p.moves[i].Range.End >= pos })
	if i < len(p.moves) && p.moves[i].Contains(pos) {
		return p.dests[i]
	}
	if p.moves[0].Contains(pos) {
		return p.dests[0]
	}
	return nil
}

// transfer scans the local engine and streams every block this node must
// hand over for the move from old to target, in batches per destination,
// at most bytesPerSec (0: unlimited). It returns when everything was sent
// and acknowledged, or ctx ends.
func transfer(ctx context.Context, eng storage.Engine, old, target *ring.Ring, rf int, self string,
	send Sender, bytesPerSec int64, p *Progress) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	type dest struct {
		addr  string
		ids   []string
		queue chan []string
	}
	dests := map[string]*dest{}
	var wg sync.WaitGroup
	var firstErr error
	var errOnce sync.Once
	limiter := pace.NewLimiter(float64(bytesPerSec))
	fail := func(err error) {
		errOnce.Do(func() { firstErr = err; cancel() })
	}
	destFor := func(m ring.Member) *dest {
		if d := dests[m.Name]; d != nil {
			return d
		}
		d := &dest{addr: m.Addr, queue: make(chan []string, 2)}
		dests[m.Name] = d
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ids := range d.queue {
				if err := sendBatch(ctx, eng, send, d.addr, ids, limiter, p); err != nil {
					fail(fmt.Errorf("send to %s: %w", d.addr, err))
					for range d.queue { // drain so the scanner never blocks
					}
					return
				}
			}
		}()
		return d
	}
	flush := func(d *dest) bool {
		if len(d.ids) == 0 {
			return true
		}
		select {
		case d.queue <- d.ids:
			d.ids = nil
			return true
		case <-ctx.Done():
			return false
		}
	}
	plan := newSendPlan(old, target, rf, self)
	scanErr := eng.Scan("", func(id string, _ storage.Meta) bool {
		for _, m := range plan.destinations(id) {
			d := destFor(m)
			d.ids = append(d.ids, id)
			p.PlannedBlocks.Add(1)
			if len(d.ids) == wire.MaxBatch && !flush(d) {
				return false
			}
		}
		return ctx.Err() == nil
	})
	for _, d := range dests {
		flush(d)
		close(d.queue)
	}
	wg.Wait()
	if scanErr != nil {
		return scanErr
	}
	if firstErr != nil {
		return firstErr
	}
	return ctx.Err()
}

// sendBatch reads the records and sends them, retrying with backoff until
// the peer accepts them or ctx ends: a peer that stays down ends the round
// through its participant record instead.
func sendBatch(ctx context.Context, eng storage.Engine, send Sender, addr string, ids []string, lim *pace.Limiter, p *Progress) error {
	items := make([]storage.Item, 0, len(ids))
	var bytes int64
	for _, id := range ids {
		rec, err := eng.Get(id)
		if errors.Is(err, storage.ErrNotFound) {
			continue // collected or removed since the scan
		}
		if errors.Is(err, storage.ErrCorrupt) {
			continue // never hand over a corrupt copy; other owners send theirs
		}
		if err != nil {
			return err
		}
		rec.StaleSince = time.Time{}
		items = append(items, storage.Item{ID: id, Record: rec})
		bytes += int64(len(rec.Data))
	}
	if len(items) == 0 {
		return nil
	}
	if err := lim.Wait(ctx, bytes); err != nil {
		return err
	}
	backoff := 50 * time.Millisecond
	for {
		_, err := send.ApplyBatch(ctx, addr, items)
		if err == nil {
			p.SentBlocks.Add(int64(len(items)))
			p.SentBytes.Add(bytes)
			return nil
		}
		if err := pace.Sleep(ctx, backoff); err != nil {
			return err
		}
		backoff = min(backoff*2, 2*time.Second)
	}
}
