package pebble

import (
	"sync"

	"github.com/goblocks/goblocks/node/storage"
)

// metaCache keeps the metadata of recently used blocks in memory. Every
// replica write reads the stored version first (apply-if-newer) and every
// client write asks a quorum for versions; under write load those point
// reads through the LSM were a fifth of a node's CPU.
//
// It is coherent because it changes only with the block's stripe held:
// writers (exclusively) put what they committed, after the commit, or drop
// it; readers that miss fill it under the shared stripe lock, so no writer
// can commit between their read of the LSM and their fill. A reader that
// hits without the lock sees a version that was committed and is either
// still current or was replaced by a write that had not returned yet:
// the same as reading the LSM a moment earlier.
//
// Entries are bounded (metaCacheEntries in all), so memory stays flat as
// data grows; a full shard drops an arbitrary entry. Records whose
// metadata could not be read are never cached.
type metaCache struct {
	shards [numStripes]metaShard
}

type metaShard struct {
	mu sync.Mutex
	m  map[string]storage.Meta
}

// metaCacheEntries bounds the cache: ~64k blocks, about 10 MiB.
const metaCacheEntries = 64 << 10

const metaShardEntries = metaCacheEntries / numStripes

func (c *metaCache) get(stripe int, id string) (storage.Meta, bool) {
	s := &c.shards[stripe]
	s.mu.Lock()
	m, ok := s.m[id]
	s.mu.Unlock()
	return m, ok
}

// put records m as id's metadata; the caller holds id's stripe.
func (c *metaCache) put(stripe int, id string, m storage.Meta) {
	s := &c.shards[stripe]
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.m == nil {
		s.m = make(map[string]storage.Meta, metaShardEntries)
	}
	if _, ok := s.m[id]; !ok && len(s.m) >= metaShardEntries {
		for k := range s.m {
			delete(s.m, k)
			break
		}
	}
	s.m[id] = m
}

// drop forgets id; the caller holds id's stripe exclusively.
func (c *metaCache) drop(stripe int, id string) {
	s := &c.shards[stripe]
	s.mu.Lock()
	delete(s.m, id)
	s.mu.Unlock()
}
