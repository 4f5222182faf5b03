package transport

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/goblocks/goblocks/node/hlc"
	"github.com/goblocks/goblocks/node/storage"
	"github.com/goblocks/goblocks/node/wire"
)

// A pipeline multiplexes the single-record calls that concurrent requests
// make to one peer into batch requests: while a batch is on the wire, the
// next one fills up. An idle peer gets a batch of one immediately (no
// added latency); a busy one gets one request and one fsync per batch
// instead of one per record.
//
// Ownership of a call passes from submit to the pipeline at the send on
// queue, which is unbuffered: once that send completes, run holds the call
// and answers it exactly once on call.done; until then the submitter holds
// it. With a buffer, a call could sit in a queue whose goroutine had already
// decided to retire or stop, answered by nobody.
type pipeline struct {
	c   *Client
	key pipeKey
	// queue hands calls to run. Submitters waiting on it while every slot
	// is busy are what the next batch collects.
	queue chan *call
	// gone is closed, under pipes.mu and together with the removal from
	// pipes.byPeer, when run stops taking calls (retired or client
	// closed): a submitter that has not handed its call over starts again.
	gone chan struct{}
	// slots bounds concurrent batch requests to the peer.
	slots chan struct{}
}

type call struct {
	ctx  context.Context
	id   string
	rec  storage.Record // apply
	done chan callResult
}

type callResult struct {
	rec  storage.Record // fetch
	meta storage.Meta   // meta
	held hlc.Version    // apply: the version the peer holds afterwards
	err  error
}

const (
	pipelineDepth = 2                // concurrent batches per peer and kind
	pipelineIdle  = 30 * time.Second // an idle pipeline's goroutine exits
)

type pipeKey struct {
	addr string
	kind callKind
}

// callKind is what a pipeline's batches do at the peer.
type callKind uint8

const (
	kindApply  callKind = iota // wire.PathBatchApply
	kindFetch                  // wire.PathBatchFetch
	kindMeta                   // wire.PathBatchMeta: versions, no payloads
	kindDigest                 // wire.PathBatchDigest: versions, payloads checked there
)

type pipelines struct {
	mu      sync.Mutex
	byPeer  map[pipeKey]*pipeline
	wg      sync.WaitGroup // run goroutines and the batches they send
	closing chan struct{}
	closed  bool
	// idle is how long a pipeline waits for a call before it retires
	// (pipelineIdle; tests shorten it).
	idle time.Duration
}

var errClientClosed = errors.New("transport: client closed")

// pipelineFor returns the running pipeline to addr, starting one if there
// is none.
func (c *Client) pipelineFor(addr string, kind callKind) (*pipeline, error) {
	c.pipes.mu.Lock()
	defer c.pipes.mu.Unlock()
	if c.pipes.closed {
		return nil, errClientClosed
	}
	k := pipeKey{addr, kind}
	if p := c.pipes.byPeer[k]; p != nil {
		return p, nil
	}
	p := &pipeline{c: c, key: k, queue: make(chan *call), gone: make(chan struct{}), slots: make(chan struct{}, pipelineDepth)}
	if c.pipes.byPeer == nil {
		c.pipes.byPeer = map[pipeKey]*pipeline{}
	}
	c.pipes.byPeer[k] = p
	c.pipes.wg.Add(1)
	go p.run()
	return p, nil
}

// submit hands a call to the peer's pipeline and waits for its result.
func (c *Client) submit(ctx context.Context, addr string, kind callKind, cl *call) (callResult, error) {
	cl.ctx, cl.done = ctx, make(chan callResult, 1)
	for handed := false; !handed; {
		p, err := c.pipelineFor(addr, kind)
		if err != nil {
			return callResult{}, err
		}
		select {
		case p.queue <- cl:
			handed = true
		case <-p.gone:
			// Retired or stopped before taking the call: the next
			// pipelineFor starts a new pipeline or reports the close.
		case <-ctx.Done():
			return callResult{}, ctx.Err()
		}
	}
	select {
	case r := <-cl.done:
		return r, r.err
	case <-ctx.Done():
		// The pipeline still answers into cl.done (buffered); nobody reads it.
		return callResult{}, ctx.Err()
	}
}

func (p *pipeline) run() {
	defer p.c.pipes.wg.Done()
	idle := time.NewTimer(p.c.pipes.idle)
	defer idle.Stop()
	for {
		// Take a slot first: while every slot is busy, submitters wait on
		// the queue, and the next batch leaves with all of them.
		select {
		case p.slots <- struct{}{}:
		case <-p.c.pipes.closing:
			p.stop()
			return
		}
		var batch []*call
		select {
		case first := <-p.queue:
			batch = append(batch, first)
		case <-idle.C:
			<-p.slots
			if p.retire() {
				return
			}
			idle.Reset(p.c.pipes.idle)
			continue
		case <-p.c.pipes.closing:
			p.stop()
			return
		}
	fill:
		for len(batch) < wire.MaxBatch {
			select {
			case cl := <-p.queue:
				batch = append(batch, cl)
			default:
				break fill
			}
		}
		idle.Reset(p.c.pipes.idle)
		p.c.pipes.wg.Add(1)
		go func() {
			defer p.c.pipes.wg.Done()
			defer func() { <-p.slots }()
			p.send(batch)
		}()
	}
}

// retire stops an idle pipeline, unless batches it sent are still in
// flight (a successor would exceed pipelineDepth to the peer). A call
// racing with it either was taken before (and the pipeline is not idle) or
// sees gone and goes to a new pipeline.
func (p *pipeline) retire() bool {
	p.c.pipes.mu.Lock()
	defer p.c.pipes.mu.Unlock()
	if len(p.slots) > 0 {
		return false
	}
	p.removeLocked()
	return true
}

// stop ends the pipeline when the client closes.
func (p *pipeline) stop() {
	p.c.pipes.mu.Lock()
	defer p.c.pipes.mu.Unlock()
	p.removeLocked()
}

func (p *pipeline) removeLocked() {
	if p.c.pipes.byPeer[p.key] == p {
		delete(p.c.pipes.byPeer, p.key)
	}
	close(p.gone)
}

func (p *pipeline) send(batch []*call) {
	if p.c.closingCtx.Err() != nil {
		// Taken as the client closed (run picked the call over closing).
		for _, cl := range batch {
			cl.done <- callResult{err: errClientClosed}
		}
		return
	}
	// Calls whose request gave up while queued are not sent.
	live := batch[:0]
	deadline := time.Time{}
	for _, cl := range batch {
		if err := cl.ctx.Err(); err != nil {
			cl.done <- callResult{err: err}
			continue
		}
		live = append(live, cl)
		if d, ok := cl.ctx.Deadline(); ok && d.After(deadline) {
			deadline = d
		}
	}
	if len(live) == 0 {
		return
	}
	p.c.stats.batches.Add(1)
	p.c.stats.calls.Add(int64(len(live)))
	// The batch serves many requests: it ends at the latest of their
	// deadlines, or when the client closes. It carries the trace contexts
	// of its sampled calls.
	var traces []map[string]string
	for _, cl := range live {
		if t := p.c.traceOf(cl.ctx); t != nil && len(traces) < wire.MaxStreamTraces {
			t[wire.TraceBlockID] = cl.id
			traces = append(traces, t)
		}
	}
	base := withTraces(context.Background(), traces)
	ctx, cancel := context.WithCancel(base)
	if !deadline.IsZero() {
		ctx, cancel = context.WithDeadline(base, deadline)
	}
	defer cancel()
	stop := context.AfterFunc(p.c.closingCtx, cancel)
	defer stop()
	closedErr := func(err error) error {
		if p.c.closingCtx.Err() != nil {
			return fmt.Errorf("%w: %w", errClientClosed, err)
		}
		return err
	}
	switch p.key.kind {
	case kindApply:
		p.sendApply(ctx, live, closedErr)
	case kindFetch:
		p.sendFetch(ctx, live, closedErr)
	case kindMeta, kindDigest:
		p.sendMeta(ctx, live, closedErr)
	}
}

func (p *pipeline) sendApply(ctx context.Context, live []*call, closedErr func(error) error) {
	items := make([]storage.Item, len(live))
	for i, cl := range live {
		items[i] = storage.Item{ID: cl.id, Record: cl.rec}
	}
	results, err := p.c.ApplyBatch(ctx, p.key.addr, items)
	if err != nil {
		err = closedErr(err)
	}
	for i, cl := range live {
		switch {
		case err != nil:
			cl.done <- callResult{err: err}
		case results[i].Applied:
			cl.done <- callResult{held: cl.rec.Version}
		default:
			cl.done <- callResult{held: results[i].Held}
		}
	}
}

func (p *pipeline) sendFetch(ctx context.Context, live []*call, closedErr func(error) error) {
	replies, err := p.c.FetchBatch(ctx, p.key.addr, callIDs(live))
	if err != nil {
		err = closedErr(err)
	}
	p.answer(live, err, func(i int) byte { return replies[i].Status }, func(i int) callResult { return callResult{rec: replies[i].Record} })
}

func (p *pipeline) sendMeta(ctx context.Context, live []*call, closedErr func(error) error) {
	metaBatch := p.c.MetaBatch
	if p.key.kind == kindDigest {
		metaBatch = p.c.DigestBatch
	}
	replies, err := metaBatch(ctx, p.key.addr, callIDs(live))
	if err != nil {
		err = closedErr(err)
	}
	p.answer(live, err, func(i int) byte { return replies[i].Status }, func(i int) callResult { return callResult{meta: replies[i].Meta} })
}

// answer gives each call of a fetch or meta batch the batch's error, the
// error its reply's status means, or its result.
func (p *pipeline) answer(live []*call, err error, status func(i int) byte, result func(i int) callResult) {
	for i, cl := range live {
		cerr := err
		if cerr == nil {
			cerr = statusErr(p.key.addr, status(i), cl.id)
		}
		if cerr != nil {
			cl.done <- callResult{err: cerr}
			continue
		}
		cl.done <- result(i)
	}
}

// statusErr maps a batch fetch or meta status other than found to the
// error a single call returns.
func statusErr(addr string, status byte, id string) error {
	switch status {
	case wire.FetchAbsent:
		return storage.ErrNotFound
	case wire.FetchCorrupt:
		return fmt.Errorf("%w: %s reports its copy of %q unreadable", storage.ErrCorrupt, addr, id)
	}
	return nil
}

func callIDs(calls []*call) []string {
	ids := make([]string, len(calls))
	for i, cl := range calls {
		ids[i] = cl.id
	}
	return ids
}
