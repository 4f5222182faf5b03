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
	start, syncs := time.Now(), e.FsyncsForTest()
	i := 0
	for b.Loop() {
		if _, err := e.Apply(fmt.Sprintf("blk-%09d", i), r); err != nil {
			b.Fatal(err)
		}
		i++
	}
	reportWrites(b, e, int64(i), start, syncs)
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
	start, syncs := time.Now(), e.FsyncsForTest()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			id := fmt.Sprintf("blk-%09d", next.Add(1))
			if _, err := e.Apply(id, r); err != nil {
				b.Error(err)
				return
			}
		}
	})
	reportWrites(b, e, next.Load(), start, syncs)
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

// reportWrites reports throughput and how many writes shared each WAL
// fsync: about 1 without group commit.
func reportWrites(b *testing.B, e *pebble.Engine, writes int64, start time.Time, syncs0 uint64) {
	b.ReportMetric(float64(writes)/time.Since(start).Seconds(), "writes/s")
	if syncs := e.FsyncsForTest() - syncs0; syncs > 0 {
		b.ReportMetric(float64(writes)/float64(syncs), "writes/fsync")
	}
}

// BenchmarkApplyParallelThreeEngines is a 3-replica cluster's disk load in
// one process: every write is applied to three engines (three WALs on one
// disk), 32 writers.
func BenchmarkApplyParallelThreeEngines(b *testing.B) {
	es := []*pebble.Engine{benchOpen(b), benchOpen(b), benchOpen(b)}
	r := storage.NewRecord(storagetest.Block(1), storagetest.V(1, "n"))
	var next atomic.Int64
	b.SetBytes(storagetest.BlockSize)
	b.SetParallelism((32 + gomaxprocs() - 1) / gomaxprocs())
	b.ResetTimer()
	start, syncs := time.Now(), es[0].FsyncsForTest()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			id := fmt.Sprintf("blk-%09d", next.Add(1))
			done := make(chan error, 3)
			for _, e := range es {
				go func() { _, err := e.Apply(id, r); done <- err }()
			}
			for range es {
				if err := <-done; err != nil {
					b.Error(err)
					return
				}
			}
		}
	})
	reportWrites(b, es[0], next.Load(), start, syncs)
}
