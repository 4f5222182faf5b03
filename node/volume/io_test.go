package volume

import (
	"bytes"
	"context"
	"math/rand/v2"
	"sync"
	"testing"

	"github.com/goblocks/goblocks/internal/onenode"
)

// newIO is volume I/O over a real coordinator of a one-node ring (the
// multi-node paths are exercised through NBD in node/app).
func newIO(t *testing.T) *IO { return NewIO(onenode.Coordinator(t)) }

func testVolume(blocks int64) Volume {
	return Volume{Name: "vol", Size: blocks * 4096, BlockSize: 4096, State: Ready}
}

func TestIOReadsZerosWhereNothingWasWritten(t *testing.T) {
	o, v, ctx := newIO(t), testVolume(4), context.Background()
	p := bytes.Repeat([]byte{0xff}, 3*4096)
	if err := o.ReadAt(ctx, v, p, 100); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(p, make([]byte, len(p))) {
		t.Fatal("a never-written range did not read as zeros")
	}
}

// A model (a byte slice) and the volume get the same random writes,
// zeroes and trims at unaligned offsets; every read matches the model.
func TestIOMatchesAByteModel(t *testing.T) {
	o, v, ctx := newIO(t), testVolume(8), context.Background()
	model := make([]byte, v.Size)
	rng := rand.New(rand.NewPCG(1, 2))
	for step := range 300 {
		off := rng.Int64N(v.Size)
		length := rng.Int64N(min(v.Size-off, 3*4096) + 1)
		switch rng.IntN(4) {
		case 0, 1:
			p := make([]byte, length)
			for i := range p {
				p[i] = byte(rng.UintN(255) + 1)
			}
			if err := o.WriteAt(ctx, v, p, off); err != nil {
				t.Fatal(err)
			}
			copy(model[off:], p)
		case 2:
			punch := rng.IntN(2) == 0
			if err := o.Zero(ctx, v, off, length, punch); err != nil {
				t.Fatal(err)
			}
			clear(model[off : off+length])
		case 3:
			// A trim discards whole blocks only; the model follows.
			if err := o.Trim(ctx, v, off, length); err != nil {
				t.Fatal(err)
			}
			first, last := (off+4095)/4096, (off+length)/4096
			for b := first; b < last; b++ {
				clear(model[b*4096 : (b+1)*4096])
			}
		}
		got := make([]byte, v.Size)
		if err := o.ReadAt(ctx, v, got, 0); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, model) {
			t.Fatalf("step %d: the volume differs from the model", step)
		}
	}
}

// Sixteen writers each own 256 bytes of the same two blocks and write
// them over and over at once: with a read-modify-write that did not hold
// the block's lock, one writer's bytes would overwrite another's.
func TestIOConcurrentPartialWritesToOneBlock(t *testing.T) {
	o, v, ctx := newIO(t), testVolume(2), context.Background()
	const writers, rounds, piece = 16, 40, 256
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for r := range rounds {
				p := bytes.Repeat([]byte{byte(w*rounds + r + 1)}, piece)
				// Each writer's piece straddles nothing: one in block 0,
				// one in block 1.
				for _, base := range []int64{0, 4096} {
					if err := o.WriteAt(ctx, v, p, base+int64(w*piece)); err != nil {
						t.Error(err)
						return
					}
				}
			}
		})
	}
	wg.Wait()
	got := make([]byte, v.Size)
	if err := o.ReadAt(ctx, v, got, 0); err != nil {
		t.Fatal(err)
	}
	for _, base := range []int{0, 4096} {
		for w := range writers {
			want := bytes.Repeat([]byte{byte(w*rounds + rounds)}, piece)
			if at := base + w*piece; !bytes.Equal(got[at:at+piece], want) {
				t.Fatalf("writer %d's last write at %d was lost: got %x...", w, at, got[at:at+8])
			}
		}
	}
}

func TestIORangeErrors(t *testing.T) {
	o, v, ctx := newIO(t), testVolume(2), context.Background()
	for name, err := range map[string]error{
		"read past end":  o.ReadAt(ctx, v, make([]byte, 2), v.Size-1),
		"write past end": o.WriteAt(ctx, v, make([]byte, 2), v.Size-1),
		"zero past end":  o.Zero(ctx, v, 4096, v.Size, true),
		"trim past end":  o.Trim(ctx, v, v.Size+4096, 1),
		"negative":       o.ReadAt(ctx, v, make([]byte, 1), -1),
	} {
		if err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}
