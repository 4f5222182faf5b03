package volume

import (
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"sync"

	"golang.org/x/sync/errgroup"

	"github.com/goblocks/goblocks/node/hlc"
	"github.com/goblocks/goblocks/node/replication"
	"github.com/goblocks/goblocks/node/storage"
)

// Blocks is the cluster's block API as a node's coordinator runs it:
// quorum writes and linearizable reads at the configured consistency.
type Blocks interface {
	Put(ctx context.Context, id string, data []byte, cl replication.Consistency) (hlc.Version, error)
	Get(ctx context.Context, id string, cl replication.Consistency) (storage.Record, error)
	Delete(ctx context.Context, id string, cl replication.Consistency) (hlc.Version, error)
}

// lockStripes bounds the memory of the per-block locks; two blocks share
// a stripe with probability 1/lockStripes, which only serializes them.
const lockStripes = 1024

// perRequestParallelism is how many blocks of one request run at once: a
// 128 KiB read is 32 blocks, fetched together rather than one after the
// other.
const perRequestParallelism = 32

// IO reads and writes byte ranges of volumes through the cluster. One IO
// serves every connection of a node, so its block locks serialize
// read-modify-writes of the same block across connections.
type IO struct {
	blocks Blocks
	seed   maphash.Seed
	locks  [lockStripes]sync.Mutex
}

// NewIO returns the volume I/O of a node over its coordinator.
func NewIO(b Blocks) *IO { return &IO{blocks: b, seed: maphash.MakeSeed()} }

func (o *IO) lock(id string) *sync.Mutex {
	return &o.locks[maphash.String(o.seed, id)%lockStripes]
}

// ErrRange: the request reaches past the end of the volume.
var ErrRange = errors.New("volume: offset and length reach past the end")

// span is the part of one block a request covers: block index, and the
// byte range [from, to) inside the block, and where it starts in the
// request's buffer.
type span struct {
	index    int64
	from, to int
	at       int64
}

func (s span) whole(blockSize int) bool { return s.from == 0 && s.to == blockSize }

// spans splits [off, off+length) into per-block pieces.
func spans(v Volume, off, length int64) ([]span, error) {
	if off < 0 || length < 0 || off > v.Size || length > v.Size-off {
		return nil, fmt.Errorf("%w: offset %d + length %d > size %d", ErrRange, off, length, v.Size)
	}
	bs := int64(v.BlockSize)
	var out []span
	for pos := off; pos < off+length; {
		idx := pos / bs
		from := pos - idx*bs
		to := min(bs, off+length-idx*bs)
		out = append(out, span{index: idx, from: int(from), to: int(to), at: pos - off})
		pos = idx*bs + to
	}
	return out, nil
}

// ReadAt fills p from offset off of v. A block never written (or trimmed)
// reads as zeros.
func (o *IO) ReadAt(ctx context.Context, v Volume, p []byte, off int64) error {
	ss, err := spans(v, off, int64(len(p)))
	if err != nil {
		return err
	}
	return o.each(ctx, ss, func(ctx context.Context, s span) error {
		data, err := o.read(ctx, BlockID(v.Name, s.index), v.BlockSize)
		if err != nil {
			return err
		}
		copy(p[s.at:s.at+int64(s.to-s.from)], data[s.from:s.to])
		return nil
	})
}

// read returns the block's payload, zeros when it has none.
func (o *IO) read(ctx context.Context, id string, blockSize int) ([]byte, error) {
	rec, err := o.blocks.Get(ctx, id, "")
	switch {
	case errors.Is(err, storage.ErrNotFound):
		return make([]byte, blockSize), nil
	case err != nil:
		return nil, err
	case len(rec.Data) != blockSize:
		return nil, fmt.Errorf("block %s holds %d bytes, the volume's blocks are %d", id, len(rec.Data), blockSize)
	}
	return rec.Data, nil
}

// WriteAt stores p at offset off of v. Whole blocks are written as they
// are; a partly covered block is read, patched and written under its lock,
// and whole-block writes take the same lock, so concurrent requests that
// touch one block apply in some order and neither is lost. It returns once
// every block is acknowledged at the write consistency.
func (o *IO) WriteAt(ctx context.Context, v Volume, p []byte, off int64) error {
	ss, err := spans(v, off, int64(len(p)))
	if err != nil {
		return err
	}
	return o.each(ctx, ss, func(ctx context.Context, s span) error {
		return o.patch(ctx, v, s, func(block []byte) { copy(block[s.from:s.to], p[s.at:]) })
	})
}

// Zero makes [off, off+length) of v read as zeros. With punch, blocks it
// covers whole get a tombstone (they read as zeros and take no space once
// collected); without (NBD's NO_HOLE), they are written as zeros. Partly
// covered blocks are patched either way.
func (o *IO) Zero(ctx context.Context, v Volume, off, length int64, punch bool) error {
	return o.chunked(ctx, v, off, length, func(ctx context.Context, s span) error {
		if punch && s.whole(v.BlockSize) {
			return o.discard(ctx, v, s)
		}
		return o.patch(ctx, v, s, func(block []byte) { clear(block[s.from:s.to]) })
	})
}

// Trim discards the blocks [off, off+length) covers whole (tombstones);
// partly covered blocks keep their data, as NBD allows for a trim.
func (o *IO) Trim(ctx context.Context, v Volume, off, length int64) error {
	return o.chunked(ctx, v, off, length, func(ctx context.Context, s span) error {
		if !s.whole(v.BlockSize) {
			return nil
		}
		return o.discard(ctx, v, s)
	})
}

// discard deletes a whole block (a tombstone), under its lock like every
// write.
func (o *IO) discard(ctx context.Context, v Volume, s span) error {
	id := BlockID(v.Name, s.index)
	mu := o.lock(id)
	mu.Lock()
	defer mu.Unlock()
	_, err := o.blocks.Delete(ctx, id, "")
	return err
}

// zeroChunk is how many blocks of a zero or trim request are planned at
// once: a trim of a whole large volume (mkfs discards the device first)
// must not build a span per block up front.
const zeroChunk = 1024

// chunked runs fn over the spans of [off, off+length), zeroChunk blocks
// at a time.
func (o *IO) chunked(ctx context.Context, v Volume, off, length int64, fn func(context.Context, span) error) error {
	if _, err := spans(v, off, 0); err != nil || length < 0 || length > v.Size-off {
		return fmt.Errorf("%w: offset %d + length %d > size %d", ErrRange, off, length, v.Size)
	}
	step := int64(zeroChunk * v.BlockSize)
	for pos, end := off, off+length; pos < end; {
		next := min(end, (pos/step+1)*step)
		ss, err := spans(v, pos, next-pos)
		if err != nil {
			return err
		}
		if err := o.each(ctx, ss, fn); err != nil {
			return err
		}
		pos = next
	}
	return nil
}

// patch writes block s.index with fill applied: to a zero block when s
// covers it whole, else to its current content.
func (o *IO) patch(ctx context.Context, v Volume, s span, fill func([]byte)) error {
	id := BlockID(v.Name, s.index)
	mu := o.lock(id)
	mu.Lock()
	defer mu.Unlock()
	var block []byte
	if s.whole(v.BlockSize) {
		block = make([]byte, v.BlockSize)
	} else {
		cur, err := o.read(ctx, id, v.BlockSize)
		if err != nil {
			return err
		}
		block = cur
	}
	fill(block)
	_, err := o.blocks.Put(ctx, id, block, "")
	return err
}

// each runs fn for every span, perRequestParallelism at a time; the first
// error cancels the rest.
func (o *IO) each(ctx context.Context, ss []span, fn func(context.Context, span) error) error {
	if len(ss) == 1 {
		return fn(ctx, ss[0])
	}
	g, ctx := errgroup.WithContext(ctx)
	g.SetLimit(perRequestParallelism)
	for _, s := range ss {
		g.Go(func() error { return fn(ctx, s) })
	}
	return g.Wait()
}
