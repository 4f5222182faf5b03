package transport

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"

	"github.com/goblocks/goblocks/node/storage"
	"github.com/goblocks/goblocks/node/wire"
)

// ApplyBatch sends items to the peer in one request (at most
// wire.MaxBatch); results[i] reports whether the peer stored items[i] and,
// if not, the version it holds. Migration streams and the write
// multiplexer use it.
func (c *Client) ApplyBatch(ctx context.Context, addr string, items []storage.Item) ([]wire.ApplyResult, error) {
	if len(items) > wire.MaxBatch {
		return nil, fmt.Errorf("transport: batch of %d > %d records", len(items), wire.MaxBatch)
	}
	body := make([]byte, 0, len(items)*(c.max+64))
	for _, it := range items {
		var err error
		if body, err = wire.AppendFrame(body, it.ID, it.Record); err != nil {
			return nil, err
		}
	}
	answer, err := c.exchange(ctx, addr, wire.OpApply, body)
	if err != nil {
		return nil, err
	}
	br := bufio.NewReaderSize(bytes.NewReader(answer), 16)
	results := make([]wire.ApplyResult, len(items))
	for i := range results {
		if results[i], err = wire.ReadApplyResult(br); err != nil {
			return nil, fmt.Errorf("%w: %s answered %d results for %d records: %w", ErrRemote, addr, i, len(items), err)
		}
	}
	return results, nil
}

// FetchBatch reads the peer's copies of ids (at most wire.MaxBatch).
// replies[i] answers ids[i].
func (c *Client) FetchBatch(ctx context.Context, addr string, ids []string) ([]wire.FetchReply, error) {
	answer, err := c.exchange(ctx, addr, wire.OpFetch, encodeIDs(ids))
	if err != nil {
		return nil, err
	}
	br := bufio.NewReaderSize(bytes.NewReader(answer), 16)
	dec := wire.NewDecoder(br, c.max)
	replies := make([]wire.FetchReply, len(ids))
	for i, id := range ids {
		status, err := br.ReadByte()
		if err != nil {
			return nil, fmt.Errorf("%w: %s: batch fetch cut short at %d of %d: %w", ErrRemote, addr, i, len(ids), err)
		}
		replies[i].Status = status
		switch status {
		case wire.FetchAbsent, wire.FetchCorrupt:
		case wire.FetchFound:
			got, rec, err := dec.Decode()
			if err != nil {
				return nil, fmt.Errorf("%s: batch fetch: %w", addr, err)
			}
			if got != id {
				return nil, fmt.Errorf("%w: %s answered %q for %q", ErrRemote, addr, got, id)
			}
			replies[i].Record = rec
		default:
			return nil, fmt.Errorf("%w: %s: unknown fetch status %q", ErrRemote, addr, status)
		}
	}
	return replies, nil
}

// MetaBatch reads the metadata of the peer's copies of ids (at most
// wire.MaxBatch). replies[i] answers ids[i].
func (c *Client) MetaBatch(ctx context.Context, addr string, ids []string) ([]wire.MetaReply, error) {
	return c.metaBatch(ctx, addr, wire.OpMeta, ids)
}

// DigestBatch is MetaBatch with each payload read and checked by the
// peer: a copy that fails its checksum answers wire.FetchCorrupt.
func (c *Client) DigestBatch(ctx context.Context, addr string, ids []string) ([]wire.MetaReply, error) {
	return c.metaBatch(ctx, addr, wire.OpDigest, ids)
}

func (c *Client) metaBatch(ctx context.Context, addr string, op byte, ids []string) ([]wire.MetaReply, error) {
	answer, err := c.exchange(ctx, addr, op, encodeIDs(ids))
	if err != nil {
		return nil, err
	}
	br := bufio.NewReaderSize(bytes.NewReader(answer), 16)
	replies := make([]wire.MetaReply, len(ids))
	for i := range ids {
		status, err := br.ReadByte()
		if err != nil {
			return nil, fmt.Errorf("%w: %s: batch meta cut short at %d of %d: %w", ErrRemote, addr, i, len(ids), err)
		}
		replies[i].Status = status
		switch status {
		case wire.FetchAbsent, wire.FetchCorrupt:
		case wire.FetchFound:
			if replies[i].Meta, err = wire.ReadMeta(br); err != nil {
				return nil, fmt.Errorf("%w: %s: batch meta: %w", ErrRemote, addr, err)
			}
		default:
			return nil, fmt.Errorf("%w: %s: unknown meta status %q", ErrRemote, addr, status)
		}
	}
	return replies, nil
}

type transferKey struct{}

// Transfers marks batches sent with the returned context as migration
// transfers, so receivers count them as such.
type Transfers struct{ *Client }

// ApplyBatch sends a migration batch.
func (t Transfers) ApplyBatch(ctx context.Context, addr string, items []storage.Item) ([]wire.ApplyResult, error) {
	return t.Client.ApplyBatch(context.WithValue(ctx, transferKey{}, true), addr, items)
}

type tracesKey struct{}

// withTraces attaches the trace contexts of the sampled calls a batch
// carries, for the peer's span.
func withTraces(ctx context.Context, traces []map[string]string) context.Context {
	if len(traces) == 0 {
		return ctx
	}
	return context.WithValue(ctx, tracesKey{}, traces)
}

func encodeIDs(ids []string) []byte {
	var b bytes.Buffer
	_ = wire.EncodeIDs(&b, ids)
	return b.Bytes()
}

// streamAttempts bounds how often a request is offered to a fresh stream
// after the one it was given closed before answering (every op is
// idempotent: a record applies once by its version, reads change nothing).
const streamAttempts = 3

// exchange sends one batch request to the peer, on its stream when it has
// one and as an HTTP request otherwise, and returns the body of a 200
// answer.
func (c *Client) exchange(ctx context.Context, addr string, op byte, body []byte) ([]byte, error) {
	q := wire.StreamRequest{Op: op, Body: body}
	class := classRequests
	if ctx.Value(transferKey{}) != nil {
		q.Flags |= wire.StreamTransfer
		class = classBulk
	}
	q.Traces, _ = ctx.Value(tracesKey{}).([]map[string]string)
	for attempt := 1; ; attempt++ {
		s, err := c.openStream(ctx, addr, class)
		if err != nil {
			return nil, err
		}
		if s == nil {
			return c.post(ctx, addr, q)
		}
		resp, err := s.call(ctx, q)
		if errors.Is(err, errStreamGone) && attempt < streamAttempts {
			continue
		}
		if err != nil {
			return nil, err
		}
		c.stats.streamed.Add(1)
		if resp.Status != http.StatusOK {
			return nil, remoteErrorFrom(http.MethodPost+" "+wire.OpPath(op), resp.Status, bytes.NewReader(resp.Body))
		}
		return resp.Body, nil
	}
}

// post sends a batch request as an HTTP request, for a peer without
// streams, and returns the body of a 200 answer.
func (c *Client) post(ctx context.Context, addr string, q wire.StreamRequest) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.scheme+addr+wire.OpPath(q.Op), bytes.NewReader(q.Body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/octet-stream")
	if q.Flags&wire.StreamTransfer != 0 {
		req.Header.Set(wire.HeaderTransfer, "migration")
	}
	if len(q.Traces) > 0 {
		for k, v := range q.Traces[0] {
			req.Header.Set(k, v)
		}
	}
	c.token.Authorize(req.Header)
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, err
	}
	defer drain(resp)
	if resp.StatusCode != http.StatusOK {
		return nil, remoteError(resp)
	}
	limit := wire.MaxStreamBody(c.max)
	answer, err := io.ReadAll(io.LimitReader(resp.Body, int64(limit)+1))
	if err != nil {
		return nil, err
	}
	if len(answer) > limit {
		return nil, fmt.Errorf("%w: %s answered more than %d bytes", ErrRemote, addr, limit)
	}
	return answer, nil
}
