package transport

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"

	"github.com/goblocks/goblocks/node/hlc"
	"github.com/goblocks/goblocks/node/wire"
)

// AntiEntropyDigests asks the peer at addr for its bucket digests of the
// blocks it shares with self in ring ringID.
func (c *Client) AntiEntropyDigests(ctx context.Context, addr, self, ringID string) ([]uint64, error) {
	q := url.Values{"peer": {self}, "ring": {ringID}}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.scheme+addr+wire.PathAntiEntropyDigest+"?"+q.Encode(), nil)
	if err != nil {
		return nil, err
	}
	var out wire.AntiEntropyDigests
	// 21 bytes per decimal uint64 and a comma, plus slack.
	if err := c.jsonCall(req, wire.MaxAntiEntropyDigests, &out); err != nil {
		return nil, err
	}
	return out.Digests, nil
}

// AntiEntropyEntries asks the peer for its (id, version) listing of
// buckets (at most the anti-entropy package's MaxBucketsPerRequest).
func (c *Client) AntiEntropyEntries(ctx context.Context, addr, self, ringID string, buckets []int) ([]wire.VersionedID, error) {
	body, err := json.Marshal(wire.AntiEntropyIDsRequest{Peer: self, Ring: ringID, Buckets: buckets})
	if err != nil {
		return nil, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.scheme+addr+wire.PathAntiEntropyIDs, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	var out wire.AntiEntropyIDsResponse
	if err := c.jsonCall(req, wire.MaxAntiEntropyIDsResponse, &out); err != nil {
		return nil, err
	}
	entries := make([]wire.VersionedID, len(out.Entries))
	for i, e := range out.Entries {
		v, err := hlc.ParseVersion(e.Version)
		if err != nil {
			return nil, fmt.Errorf("%w: %s: entry %q: %w", ErrRemote, addr, e.ID, err)
		}
		entries[i] = wire.VersionedID{ID: e.ID, Version: v}
	}
	return entries, nil
}

// jsonCall sends req and decodes a 200 JSON answer of at most limit bytes.
func (c *Client) jsonCall(req *http.Request, limit int64, out any) error {
	resp, err := c.do(req)
	if err != nil {
		return err
	}
	defer drain(resp)
	if resp.StatusCode != http.StatusOK {
		return remoteError(resp)
	}
	lr := &io.LimitedReader{R: resp.Body, N: limit + 1}
	if err := json.NewDecoder(lr).Decode(out); err != nil {
		return fmt.Errorf("%w: %s %s: %w", ErrRemote, req.Method, req.URL.Path, err)
	}
	if lr.N <= 0 {
		return fmt.Errorf("%w: %s %s: answer larger than %d bytes", ErrRemote, req.Method, req.URL.Path, limit)
	}
	return nil
}
