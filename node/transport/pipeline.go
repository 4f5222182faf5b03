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
type pipeline struct {
	c     *Client
	addr  string
	queue chan *call
	// slots bounds concurrent batch requests to the peer.
	slots chan struct{}
	apply bool
}

type call struct {
	ctx  context.Context
	id   string
	rec  storage.Record // apply
	done chan callResult
}

type callResult struct {
	rec  storage.Record // fetch
	held hlc.Version    // apply: the version the peer holds afterwards
	err  error
}

const (
	pipelineDepth = 2                // concurrent batches per peer and kind
	pipelineIdle  = 30 * time.Second // an idle pipeline's goroutine exits
)

type pipeKey struct {
	addr  string
	apply bool
}

type pipelines struct {
	mu      sync.Mutex
	byPeer  map[pipeKey]*pipeline
	wg      sync.WaitGroup
	closing chan struct{}
	closed  bool
}

var errClientClosed = errors.New("transport: client closed")

func (c *Client) pipelineFor(addr string, apply bool) (*pipeline, error) {
	c.pipes.mu.Lock()
	defer c.pipes.mu.Unlock()
	if c.pipes.closed {
		return nil, errClientClosed
	}
	k := pipeKey{addr, apply}
	if p := c.pipes.byPeer[k]; p != nil {
		return p, nil
	}
	p := &pipeline{c: c, addr: addr, queue: make(chan *call, 1024), slots: make(chan struct{}, pipelineDepth), apply: apply}
	if c.pipes.byPeer == nil {
		c.pipes.byPeer = map[pipeKey]*pipeline{}
	}
	c.pipes.byPeer[k] = p
	c.pipes.wg.Add(1)
	go p.run()
	return p, nil
}

// submit queues a call and waits for its result.
func (c *Client) submit(ctx context.Context, addr string, apply bool, cl *call) (callResult, error) {
	p, err := c.pipelineFor(addr, apply)
	if err != nil {
		return callResult{}, err
	}
	cl.ctx, cl.done = ctx, make(chan callResult, 1)
	select {
	case p.queue <- cl:
	case <-ctx.Done():
		return callResult{}, ctx.Err()
	}
	select {
	case r := <-cl.done:
		return r, r.err
	case <-ctx.Done():
		return callResult{}, ctx.Err()
	}
}

func (p *pipeline) run() {
	defer p.c.pipes.wg.Done()
	idle := time.NewTimer(pipelineIdle)
	defer idle.Stop()
	for {
		// Take a slot first: while every slot is busy the queue fills, and
		// the next batch leaves with everything that accumulated.
		select {
		case p.slots <- struct{}{}:
		case <-p.c.pipes.closing:
			p.failQueued()
			return
		}
		var batch []*call
		select {
		case first := <-p.queue:
			batch = append(batch, first)
		case <-idle.C:
			if p.retire() {
				return
			}
			<-p.slots
			idle.Reset(pipelineIdle)
			continue
		case <-p.c.pipes.closing:
			p.failQueued()
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
		idle.Reset(pipelineIdle)
		p.c.pipes.wg.Add(1)
		go func() {
			defer p.c.pipes.wg.Done()
			defer func() { <-p.slots }()
			p.send(batch)
		}()
	}
}

// retire removes an idle pipeline unless a call raced in.
func (p *pipeline) retire() bool {
	p.c.pipes.mu.Lock()
	defer p.c.pipes.mu.Unlock()
	if len(p.queue) > 0 {
		return false
	}
	delete(p.c.pipes.byPeer, pipeKey{p.addr, p.apply})
	return true
}

func (p *pipeline) failQueued() {
	for {
		select {
		case cl := <-p.queue:
			cl.done <- callResult{err: errClientClosed}
		default:
			return
		}
	}
}

func (p *pipeline) send(batch []*call) {
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
	// deadlines, or when the client closes.
	ctx, cancel := context.WithCancel(context.WithoutCancel(live[0].ctx))
	if !deadline.IsZero() {
		ctx, cancel = context.WithDeadline(context.WithoutCancel(live[0].ctx), deadline)
	}
	defer cancel()
	stop := context.AfterFunc(p.c.closingCtx, cancel)
	defer stop()
	if p.apply {
		items := make([]storage.Item, len(live))
		for i, cl := range live {
			items[i] = storage.Item{ID: cl.id, Record: cl.rec}
		}
		results, err := p.c.ApplyBatch(ctx, p.addr, items)
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
		return
	}
	ids := make([]string, len(live))
	for i, cl := range live {
		ids[i] = cl.id
	}
	replies, err := p.c.FetchBatch(ctx, p.addr, ids)
	for i, cl := range live {
		switch {
		case err != nil:
			cl.done <- callResult{err: err}
		case replies[i].Status == wire.FetchAbsent:
			cl.done <- callResult{err: storage.ErrNotFound}
		case replies[i].Status == wire.FetchCorrupt:
			cl.done <- callResult{err: fmt.Errorf("%w: %s reports its copy of %q unreadable", storage.ErrCorrupt, p.addr, cl.id)}
		default:
			cl.done <- callResult{rec: replies[i].Record}
		}
	}
}
