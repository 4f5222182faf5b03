package transport

import "time"

// ErrClientClosed is the error of calls made after Close.
var ErrClientClosed = errClientClosed

// NewClientWithIdle returns a client whose pipelines retire after idle
// instead of pipelineIdle, so tests can make retiring frequent.
func NewClientWithIdle(o Options, idle time.Duration) *Client {
	c := NewClient(o)
	c.pipes.idle = idle
	return c
}

// Pipelines returns how many pipelines are running.
func (c *Client) Pipelines() int {
	c.pipes.mu.Lock()
	defer c.pipes.mu.Unlock()
	return len(c.pipes.byPeer)
}

// Streamed returns how many batches went over peer streams.
func (c *Client) Streamed() int64 { return c.stats.streamed.Load() }

// NewClientWithStreamIdle returns a client whose streams close (or, with
// calls pending, fail) after idle instead of streamIdle.
func NewClientWithStreamIdle(o Options, idle time.Duration) *Client {
	c := NewClient(o)
	c.streams.idle = idle
	return c
}

// StreamSlots returns how many peers and classes the client keeps stream
// state for.
func (c *Client) StreamSlots() int {
	c.streams.mu.Lock()
	defer c.streams.mu.Unlock()
	return len(c.streams.byKey)
}
