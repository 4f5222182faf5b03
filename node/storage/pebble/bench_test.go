package pebble_test

import (
	"fmt"
	"math/rand/v2"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/goblocks/goblocks/node/storage"
	"github.com/goblocks/goblocks/node/storage/pebble"
	"github.com/goblocks/goblocks/node/storage/storagetest"
)

func benchOpen(b *testing.B) *pebble.Engine {
	e := open(b, b.TempDir())
	b.Cleanup(func() { e.Close() })
	return e
}

// BenchmarkApply is the single-writer baseline: one synced commit, one
// fsync, per write.
func BenchmarkApply(b *testing.B) {
	e := benchOpen(b)
	r := storage.NewRecord(storagetest.Block(1), storagetest.V(1, "n"))
	b.SetBytes(storagetest.BlockSize)
	start := time.Now()
	i := 0
	for b.Loop() {
		if _, err := e.Apply(fmt.Sprintf("blk-%09d", i), r); err != nil {
			b.Fatal(err)
		}
		i++
	}
	b.ReportMetric(float64(i)/time.Since(start).Seconds(), "writes/s")
}

// BenchmarkApplyParallel runs ~32 writers on distinct ids. Each Apply is
// durable on return; pebble's group commit lets the writers share fsyncs,
// so writes/s should far exceed BenchmarkApply's.
func BenchmarkApplyParallel(b *testing.B) {
	e := benchOpen(b)
	r := storage.NewRecord(storagetest.Block(1), storagetest.V(1, "n"))
	var next atomic.Int64
	b.SetBytes(storagetest.BlockSize)
	// SetParallelism multiplies GOMAXPROCS; round up to at least 32.
	b.SetParallelism((32 + gomaxprocs() - 1) / gomaxprocs())
	b.ResetTimer()
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			id := fmt.Sprintf("blk-%09d", next.Add(1))
			if _, err := e.Apply(id, r); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(next.Load())/time.Since(start).Seconds(), "writes/s")
}

// BenchmarkGet reads random blocks of a store larger than one memtable
// flush, checksum verification included.
func BenchmarkGet(b *testing.B) {
	const n = 20000
	e := benchOpen(b)
	items := make([]storage.Item, 0, 1000)
	for i := range n {
		items = append(items, storage.Item{
			ID:     fmt.Sprintf("blk-%09d", i),
			Record: storage.NewRecord(storagetest.Block(uint64(i)), storagetest.V(1, "n")),
		})
		if len(items) == cap(items) {
			if _, err := e.ApplyBatch(items); err != nil {
				b.Fatal(err)
			}
			items = items[:0]
		}
	}
	b.SetBytes(storagetest.BlockSize)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		r := rand.New(rand.NewPCG(rand.Uint64(), 0))
		for pb.Next() {
			if _, err := e.Get(fmt.Sprintf("blk-%09d", r.IntN(n))); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

func gomaxprocs() int { return runtime.GOMAXPROCS(0) }
