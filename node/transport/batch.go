package transport

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"

	"github.com/goblocks/goblocks/node/hlc"
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
	var body bytes.Buffer
	body.Grow(len(items) * (c.max + 64))
	enc := wire.NewEncoder(&body)
	for _, it := range items {
		if err := enc.Encode(it.ID, it.Record); err != nil {
			return nil, err
		}
	}
	if err := enc.Flush(); err != nil {
		return nil, err
	}
	resp, err := c.post(ctx, addr, wire.PathBatchApply, &body)
	if err != nil {
		return nil, err
	}
	defer drain(resp)
	br := bufio.NewReaderSize(io.LimitReader(resp.Body, int64(len(items))*(10+hlc.MaxNodeLen)), 4096)
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
	resp, err := c.postIDs(ctx, addr, wire.PathBatchFetch, ids)
	if err != nil {
		return nil, err
	}
	defer drain(resp)
	br := bufio.NewReaderSize(resp.Body, 64<<10)
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
	return c.metaBatch(ctx, addr, wire.PathBatchMeta, ids)
}

// DigestBatch is MetaBatch with each payload read and checked by the
// peer: a copy that fails its checksum answers wire.FetchCorrupt.
func (c *Client) DigestBatch(ctx context.Context, addr string, ids []string) ([]wire.MetaReply, error) {
	return c.metaBatch(ctx, addr, wire.PathBatchDigest, ids)
}

func (c *Client) metaBatch(ctx context.Context, addr, path string, ids []string) ([]wire.MetaReply, error) {
	resp, err := c.postIDs(ctx, addr, path, ids)
	if err != nil {
		return nil, err
	}
	defer drain(resp)
	// Each reply is at most a status byte and a meta with the longest node name.
	br := bufio.NewReaderSize(io.LimitReader(resp.Body, int64(len(ids))*(1+1+8+1+hlc.MaxNodeLen+4+4+8)), 4096)
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

// postIDs sends a list of ids (batch fetch and meta requests).
func (c *Client) postIDs(ctx context.Context, addr, path string, ids []string) (*http.Response, error) {
	var body bytes.Buffer
	if err := wire.EncodeIDs(&body, ids); err != nil {
		return nil, err
	}
	return c.post(ctx, addr, path, &body)
}

// post sends a batch request and returns the response when the peer
// answered 200; the caller drains it.
func (c *Client) post(ctx context.Context, addr, path string, body io.Reader) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.scheme+addr+path, body)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/octet-stream")
	if ctx.Value(transferKey{}) != nil {
		req.Header.Set(wire.HeaderTransfer, "migration")
	}
	resp, err := c.do(req)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		defer drain(resp)
		return nil, remoteError(resp)
	}
	return resp, nil
}
