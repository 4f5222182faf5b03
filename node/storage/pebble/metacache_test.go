package pebble_test

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/goblocks/goblocks/node/storage"
	"github.com/goblocks/goblocks/node/storage/storagetest"
)

// Writers, batches, GC changes and readers race on a few ids; afterwards
// the cached metadata of every id is what the LSM holds (read again with
// the cache dropped), so no interleaving left the cache stale.
func TestMetaCacheCoherent(t *testing.T) {
	e := open(t, t.TempDir())
	defer e.Close()
	ids := make([]string, 12)
	for i := range ids {
		ids[i] = fmt.Sprint("blk-", i)
	}
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(w), 1))
			for i := range 400 {
				id := ids[rng.IntN(len(ids))]
				ts := uint64(1 + rng.IntN(50))
				var err error
				switch rng.IntN(6) {
				case 0:
					_, err = e.Apply(id, rec(ts, fmt.Sprint("w", w)))
				case 1:
					other := ids[rng.IntN(len(ids))]
					_, err = e.ApplyBatch([]storage.Item{{ID: id, Record: rec(ts, "b")}, {ID: other, Record: storage.NewTombstone(storagetest.V(ts, "b"))}})
				case 2:
					if m, gerr := e.GetMeta(id); gerr == nil {
						_, err = e.MarkStale(id, m.Version, time.Unix(int64(i), 0))
					}
				case 3:
					if m, gerr := e.GetMeta(id); gerr == nil {
						_, err = e.ApplyChanges([]storage.Change{{ID: id, Version: m.Version, Remove: true, StaleSince: m.StaleSince}})
					}
				case 4:
					_, err = e.Get(id)
				default:
					_, err = e.GetMeta(id)
				}
				if err != nil && !errors.Is(err, storage.ErrNotFound) {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	cached := 0
	for _, id := range ids {
		if e.MetaCachedForTest(id) {
			cached++
		}
		got, gerr := e.GetMeta(id)
		e.DropMetaCacheForTest()
		want, werr := e.GetMeta(id)
		if (gerr == nil) != (werr == nil) || errors.Is(gerr, storage.ErrNotFound) != errors.Is(werr, storage.ErrNotFound) || !reflect.DeepEqual(got, want) {
			t.Errorf("%s: cached %+v (%v), stored %+v (%v)", id, got, gerr, want, werr)
		}
	}
	if cached == 0 {
		t.Fatal("nothing was cached: the test compares nothing")
	}
}
