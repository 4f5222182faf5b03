package migration

import (
	"cmp"
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

// Sender reaches the peers of a transfer (transport.Client): it streams
// batches of records to a new owner, which applies them if newer, and
// reads the versions (and, when newer, the records) the other old owners
// hold. Safe for concurrent use.
type Sender interface {
	ApplyBatch(ctx context.Context, addr string, items []storage.Item) ([]wire.ApplyResult, error)
	MetaBatch(ctx context.Context, addr string, ids []string) ([]wire.MetaReply, error)
	FetchBatch(ctx context.Context, addr string, ids []string) ([]wire.FetchReply, error)
}

// Progress counts a transfer. Safe for concurrent use.
type Progress struct {
	PlannedBlocks atomic.Int64
	SentBlocks    atomic.Int64
	SentBytes     atomic.Int64
}

// sendPlan is the part of ring.Diff(old, target) this node executes: the
// arcs for which it is the designated sender, each with the new owners to
// send to and the other old owners to consult.
//
// Each moved block is sent once: by the first old owner of its arc (in the
// old ring's preference order) that takes part in the round; the other old
// owners stand by (if the sender dies the round aborts and the next one
// designates another). A quorum-acknowledged write may have missed the
// sender, so before sending a batch the sender asks other live old owners
// for the version they hold, and sends the newest record there is. A
// write acknowledged by a quorum W of the N old owners is held by one of
// any N-W+1 of them: with its own copy the sender asks N-W others (one at
// RF 3, none at RF 2); for a block whose own copy is missing or corrupt it
// asks every other. Transfers start only once every participant routes
// writes to old and new owners (and drained its old-view writes), so a
// write acknowledged after that question reaches the new owner directly.
type sendPlan struct {
	moves  []ring.Move // in ring order (ascending Range.End)
	dests  [][]ring.Member
	others [][]ring.Member // live old owners other than this node, per move
	need   []int           // how many of others to ask when this node's copy is good
}

func newSendPlan(old, target *ring.Ring, rf int, self string, participants []string) sendPlan {
	var p sendPlan
	for _, mv := range ring.Diff(old, target, rf) {
		i := slices.IndexFunc(mv.From, func(n string) bool { return slices.Contains(participants, n) })
		if i < 0 || mv.From[i] != self {
			continue
		}
		to := make([]ring.Member, 0, len(mv.To))
		for _, name := range mv.To {
			if m, ok := target.Member(name); ok {
				to = append(to, m)
			}
		}
		var others []ring.Member
		for _, name := range mv.From[i+1:] {
			if m, ok := old.Member(name); ok && slices.Contains(participants, name) {
				others = append(others, m)
			}
		}
		p.moves = append(p.moves, mv)
		p.dests = append(p.dests, to)
		p.others = append(p.others, others)
		// N old owners, a write quorum of N/2+1 (replication.Quorum).
		p.need = append(p.need, len(mv.From)-(len(mv.From)/2+1))
	}
	return p
}

// lookup returns the index of the planned move holding id, or -1.
func (p sendPlan) lookup(id string) int {
	if len(p.moves) == 0 {
		return -1
	}
	pos := ring.Position(id)
	// Arcs are disjoint and ordered by their end: the first arc ending at
	// or after pos is the only candidate, except for the arc that wraps
	// past zero, which comes first.
	i := sort.Search(len(p.moves), func(i int) bool { return p.moves[i].Range.End >= pos })
	if i < len(p.moves) && p.moves[i].Contains(pos) {
		return i
	}
	if p.moves[0].Contains(pos) {
		return 0
	}
	return -1
}

// consult returns the other live old owners of id whose versions the
// sender checks before sending it: enough to meet every write quorum when
// this node's copy is good (haveOwn), else all of them.
func (p sendPlan) consult(id string, haveOwn bool) []ring.Member {
	i := p.lookup(id)
	switch {
	case i < 0:
		return nil
	case haveOwn:
		return p.others[i][:min(p.need[i], len(p.others[i]))]
	}
	return p.others[i]
}

// candidate is a block to hand over as the scan read it: this node's
// record, unless its copy is corrupt (have false).
type candidate struct {
	id   string
	rec  storage.Record
	have bool
}

// streamsPerDest is how many batches to one new owner are in flight at
// once. A batch is a read here, a version check at the other old owners,
// the send and a synced write there; with one at a time each step waits
// for the one before and the nodes sit mostly idle (profiled at ~25 % CPU
// during a join). Batches are independent (idempotent by version).
const streamsPerDest = 4

// transfer scans the local engine and streams every block this node must
// hand over for the move from old to target, in batches per destination,
// at most bytesPerSec (0: unlimited). It returns when everything was sent
// and acknowledged, or ctx ends.
func transfer(ctx context.Context, eng storage.Engine, old, target *ring.Ring, rf int, self string, participants []string,
	send Sender, bytesPerSec int64, p *Progress) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	type dest struct {
		addr  string
		batch []candidate
		queue chan []candidate
	}
	plan := newSendPlan(old, target, rf, self, participants)
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
		d := &dest{addr: m.Addr, queue: make(chan []candidate, streamsPerDest)}
		dests[m.Name] = d
		for range streamsPerDest {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for batch := range d.queue {
					if err := sendBatch(ctx, send, d.addr, batch, plan.consult, limiter, p); err != nil {
						fail(fmt.Errorf("send to %s: %w", d.addr, err))
						for range d.queue { // drain so the scanner never blocks
						}
						return
					}
				}
			}()
		}
		return d
	}
	flush := func(d *dest) bool {
		if len(d.batch) == 0 {
			return true
		}
		select {
		case d.queue <- d.batch:
			d.batch = nil
			return true
		case <-ctx.Done():
			return false
		}
	}
	// Only the arcs this node sends, records and all: the engine keeps
	// blocks in ring order, so the round reads what moves, in sequence,
	// not everything stored.
	var scanErr, readErr error
	for i, mv := range plan.moves {
		scanErr = eng.ScanRecords(mv.Range, func(id string, rec storage.Record, err error) bool {
			c := candidate{id: id, rec: rec, have: err == nil}
			if err != nil && !errors.Is(err, storage.ErrCorrupt) {
				readErr = err
				return false
			}
			// Never hand over a corrupt copy: another old owner's serves.
			for _, m := range plan.dests[i] {
				d := destFor(m)
				d.batch = append(d.batch, c)
				p.PlannedBlocks.Add(1)
				if len(d.batch) == wire.MaxBatch && !flush(d) {
					return false
				}
			}
			return ctx.Err() == nil
		})
		scanErr = cmp.Or(scanErr, readErr)
		if scanErr != nil || ctx.Err() != nil {
			break
		}
	}
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

// sendBatch replaces the records another old owner holds newer and sends
// them, retrying with backoff until the peer accepts them or ctx ends: a
// peer that stays down ends the round through its participant record
// instead.
func sendBatch(ctx context.Context, send Sender, addr string, batch []candidate,
	consult func(id string, haveOwn bool) []ring.Member, lim *pace.Limiter, p *Progress) error {
	backoff := 50 * time.Millisecond
	retry := func() error {
		if err := pace.Sleep(ctx, backoff); err != nil {
			return err
		}
		backoff = min(backoff*2, 2*time.Second)
		return nil
	}
	var items []storage.Item
	for {
		var err error
		if items, err = newestRecords(ctx, send, batch, consult); err == nil {
			break
		}
		if !errors.Is(err, errPeer) {
			return err
		}
		if err := retry(); err != nil {
			return err
		}
	}
	if len(items) == 0 {
		return nil
	}
	var bytes int64
	for _, it := range items {
		bytes += int64(len(it.Record.Data))
	}
	if err := lim.Wait(ctx, bytes); err != nil {
		return err
	}
	for {
		_, err := send.ApplyBatch(ctx, addr, items)
		if err == nil {
			p.SentBlocks.Add(int64(len(items)))
			p.SentBytes.Add(bytes)
			return nil
		}
		if err := retry(); err != nil {
			return err
		}
	}
}

// errPeer marks a failed call to another old owner: worth a retry.
var errPeer = errors.New("migration: old owner unreachable")

// newestRecords returns, for each candidate, the newest record among this
// node's copy and the copies of the old owners consult names: this node's
// unless another holds a newer version, which is then fetched from it.
func newestRecords(ctx context.Context, send Sender, batch []candidate, consult func(string, bool) []ring.Member) ([]storage.Item, error) {
	type best struct {
		rec  storage.Record
		have bool
		from *ring.Member // holder of a newer version, to fetch from
	}
	ids := make([]string, len(batch))
	bests := make([]best, len(batch))
	byOwner := map[string][]int{} // other old owner -> indexes of ids to ask it about
	owners := map[string]ring.Member{}
	for i, c := range batch {
		ids[i] = c.id
		bests[i] = best{rec: c.rec, have: c.have}
		for _, m := range consult(c.id, c.have) {
			byOwner[m.Name] = append(byOwner[m.Name], i)
			owners[m.Name] = m
		}
	}
	for name, idx := range byOwner {
		m := owners[name]
		replies, err := send.MetaBatch(ctx, m.Addr, pick(ids, idx))
		if err != nil {
			return nil, fmt.Errorf("%w: versions from %s: %w", errPeer, name, err)
		}
		for k, i := range idx {
			r := replies[k]
			if r.Status != wire.FetchFound {
				continue
			}
			if b := &bests[i]; !b.have || r.Meta.Version.Newer(b.rec.Version) {
				b.rec, b.have, b.from = storage.Record{Version: r.Meta.Version}, true, &m
			}
		}
	}
	// Fetch the records other owners hold newer, per owner.
	fetch := map[string][]int{}
	for i, b := range bests {
		if b.from != nil {
			fetch[b.from.Name] = append(fetch[b.from.Name], i)
		}
	}
	for name, idx := range fetch {
		replies, err := send.FetchBatch(ctx, owners[name].Addr, pick(ids, idx))
		if err != nil {
			return nil, fmt.Errorf("%w: records from %s: %w", errPeer, name, err)
		}
		for k, i := range idx {
			r := replies[k]
			if r.Status != wire.FetchFound || bests[i].rec.Version.Newer(r.Record.Version) {
				// Gone or older than it said a moment ago (collected,
				// replaced by a repair): ask again. Newer is fine.
				return nil, fmt.Errorf("%w: %s no longer holds %s at %s", errPeer, name, ids[i], bests[i].rec.Version)
			}
			bests[i].rec = r.Record
		}
	}
	items := make([]storage.Item, 0, len(ids))
	for i, b := range bests {
		if !b.have {
			continue
		}
		b.rec.StaleSince = time.Time{}
		items = append(items, storage.Item{ID: ids[i], Record: b.rec})
	}
	return items, nil
}

// pick returns ids[i] for each i of idx.
func pick(ids []string, idx []int) []string {
	out := make([]string, len(idx))
	for k, i := range idx {
		out[k] = ids[i]
	}
	return out
}
