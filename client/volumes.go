package client

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"

	"golang.org/x/sync/errgroup"

	"github.com/goblocks/goblocks/node/adminapi"
	"github.com/goblocks/goblocks/node/volume"
)

// The JSON of the /admin/volumes endpoints (package adminapi).
type (
	Volume       = adminapi.Volume
	VolumeList   = adminapi.VolumeList
	VolumeBlocks = adminapi.VolumeBlocks
)

// CreateVolume adds a volume of size bytes (a multiple of the block size).
// ErrConflict when the name is taken, ErrBadRequest for a bad name or size.
func (c *Client) CreateVolume(ctx context.Context, name string, size int64) (Volume, error) {
	body, err := json.Marshal(adminapi.VolumeCreate{Name: name, Size: size})
	if err != nil {
		return Volume{}, err
	}
	var v Volume
	return v, c.sendJSON(ctx, http.MethodPost, "/admin/volumes", body, &v)
}

// Volumes lists the volumes with the blocks each has written.
func (c *Client) Volumes(ctx context.Context) (VolumeList, error) {
	var l VolumeList
	return l, c.getJSON(ctx, "", "/admin/volumes", &l)
}

// Volume returns one volume's record; ErrNotFound when there is none.
func (c *Client) Volume(ctx context.Context, name string) (Volume, error) {
	if err := volume.ValidateName(name); err != nil {
		return Volume{}, &Error{Op: http.MethodGet, ID: name, Status: http.StatusBadRequest, Code: "invalid_volume", Message: err.Error()}
	}
	var v Volume
	return v, c.getJSON(ctx, "", "/admin/volumes/"+name, &v)
}

// RemoveVolume deletes a volume: it marks it as being removed (NBD takes no
// new clients for it), deletes every block of it that a member holds,
// calling progress(done, total) as it goes, and removes its record. An
// interrupted removal can be run again. ErrNotFound when there is no such
// volume.
func (c *Client) RemoveVolume(ctx context.Context, name string, progress func(done, total int64)) (deleted int64, err error) {
	if err := volume.ValidateName(name); err != nil {
		return 0, &Error{Op: http.MethodDelete, ID: name, Status: http.StatusBadRequest, Code: "invalid_volume", Message: err.Error()}
	}
	if err := c.sendJSON(ctx, http.MethodPost, "/admin/volumes/"+name+"/deleting", nil, &Volume{}); err != nil {
		return 0, err
	}
	var written VolumeBlocks
	if err := c.getJSON(ctx, "", "/admin/volumes/"+name+"/written", &written); err != nil {
		return 0, err
	}
	if len(written.Unreachable) > 0 {
		return 0, fmt.Errorf("goblocks: volume %s: members %v did not list their blocks; nothing deleted (run again when they are back)", name, written.Unreachable)
	}
	total := written.Blocks
	var done atomic.Int64
	var mu sync.Mutex
	report := func() {
		if progress != nil {
			mu.Lock()
			progress(done.Load(), total)
			mu.Unlock()
		}
	}
	report()
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(16)
	// The node has clipped the ranges to the volume's blocks.
	for _, r := range written.Ranges {
		for i := r[0]; i <= r[1] && gctx.Err() == nil; i++ {
			g.Go(func() error {
				if err := c.Delete(gctx, volume.BlockID(name, i)); err != nil {
					return err
				}
				if done.Add(1)%256 == 0 {
					report()
				}
				return nil
			})
		}
	}
	if err := g.Wait(); err != nil {
		return done.Load(), err
	}
	report()
	_, err = c.roundTrip(ctx, http.MethodDelete, name, "/admin/volumes/"+name, nil)
	return done.Load(), err
}

// sendJSON sends body (JSON, or nothing) and decodes the answer into v.
func (c *Client) sendJSON(ctx context.Context, method, path string, body []byte, v any) error {
	resp, err := c.roundTrip(ctx, method, path, path, body)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(resp.body, v); err != nil {
		return fmt.Errorf("goblocks: %s: %w", path, err)
	}
	return nil
}
