package migration

import (
	"context"
	"errors"
	"fmt"
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

// handovers returns the new owners of id that must receive this node's
// copy: none unless this node is an owner in the old ring. Every old owner
// sends (not one designated sender): a quorum-acknowledged write may have
// missed any single old owner, and receivers apply by version, so the
// redundancy is what makes the hand-over lossless.
func handovers(old, target *ring.Ring, rf int, self, id string) []ring.Member {
	if !old.IsOwner(self, id, rf) {
		return nil
	}
	var out []ring.Member
	for _, m := range target.Owners(id, rf) {
		if !old.IsOwner(m.Name, id, rf) {
			out = append(out, m)
		}
	}
	return out
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
	scanErr := eng.Scan("", func(id string, _ storage.Meta) bool {
		for _, m := range handovers(old, target, rf, self, id) {
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
