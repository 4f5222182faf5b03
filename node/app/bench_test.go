package app

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/goblocks/goblocks/node/config"
	"github.com/goblocks/goblocks/node/hlc"
	"github.com/goblocks/goblocks/node/storage"
)

// The benchmarks drive 4 KiB PUTs and GETs from 32 concurrent clients
// over real HTTP on loopback, against a 3-node RF=3 cluster (quorum,
// fsync'd Pebble) and, in the same run, against a trivial one-process
// server that keeps blocks in a map: the reference the targets are set
// against. Run: make bench.

const benchClients = 32

func BenchmarkMapServerPut(b *testing.B) { benchHTTP(b, mapServer(b), http.MethodPut) }
func BenchmarkMapServerGet(b *testing.B) { benchHTTP(b, mapServer(b), http.MethodGet) }

func BenchmarkClusterPut(b *testing.B) {
	c := startCluster(b, 3, clusterOpts{})
	syncs := c.walSyncs()
	benchHTTP(b, c.addrs(), http.MethodPut)
	if n := c.walSyncs() - syncs; n > 0 {
		b.ReportMetric(float64(b.N)*3/float64(n), "replica-writes/fsync")
	}
	c.reportBatching(b)
}

func BenchmarkClusterPutMemory(b *testing.B) {
	c := startCluster(b, 3, clusterOpts{storage: "memory"})
	benchHTTP(b, c.addrs(), http.MethodPut)
	c.reportBatching(b)
}

func BenchmarkClusterGet(b *testing.B) {
	c := startCluster(b, 3, clusterOpts{})
	benchHTTP(b, c.addrs(), http.MethodGet)
	c.reportBatching(b)
}

// reportBatching reports how many replica calls each internal batch
// request carried.
func (c *testCluster) reportBatching(b *testing.B) {
	var batches, calls int64
	for _, n := range c.nodes {
		bt, cl := n.peers.BatchStats()
		batches, calls = batches+bt, calls+cl
	}
	if batches > 0 {
		b.ReportMetric(float64(calls)/float64(batches), "calls/batch")
	}
}

// BenchmarkExternalPut and BenchmarkExternalGet drive a cluster that runs
// outside the test process (GOBLOCKS_BENCH_ADDRS=host:port,...), e.g. the
// three processes of 'make run'.
func BenchmarkExternalPut(b *testing.B) { benchHTTP(b, externalAddrs(b), http.MethodPut) }
func BenchmarkExternalGet(b *testing.B) { benchHTTP(b, externalAddrs(b), http.MethodGet) }

func externalAddrs(b *testing.B) []string {
	v := os.Getenv("GOBLOCKS_BENCH_ADDRS")
	if v == "" {
		b.Skip("GOBLOCKS_BENCH_ADDRS not set")
	}
	return strings.Split(v, ",")
}

func (c *testCluster) addrs() []string {
	out := make([]string, len(c.cfgs))
	for i, cfg := range c.cfgs {
		out[i] = cfg.ReplicaAddress
	}
	return out
}

// mapServer is the reference: the least a Go HTTP block server can do.
func mapServer(b *testing.B) []string {
	var mu sync.RWMutex
	blocks := map[string][]byte{}
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id := r.URL.Path
		switch r.Method {
		case http.MethodPut:
			data, _ := io.ReadAll(io.LimitReader(r.Body, 4097))
			mu.Lock()
			blocks[id] = data
			mu.Unlock()
			w.WriteHeader(http.StatusCreated)
		default:
			mu.RLock()
			data, ok := blocks[id]
			mu.RUnlock()
			if !ok {
				http.NotFound(w, r)
				return
			}
			_, _ = w.Write(data)
		}
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	srv := &http.Server{Handler: h}
	go func() { _ = srv.Serve(ln) }()
	b.Cleanup(func() { srv.Close() })
	return []string{ln.Addr().String()}
}

// benchHTTP runs b.N requests from benchClients goroutines spread over
// addrs and reports req/s and latency percentiles. GET benchmarks first
// write the key space they read.
func benchHTTP(b *testing.B, addrs []string, method string) {
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: benchClients * 2}, Timeout: 10 * time.Second}
	data := bytes.Repeat([]byte("goblocks"), 512)
	const keys = 2000
	if method == http.MethodGet {
		for k := 0; k < keys; k++ {
			if err := doBench(client, http.MethodPut, addrs[k%len(addrs)], fmt.Sprintf("k%d", k), data); err != nil {
				b.Fatal(err)
			}
		}
	}
	var next atomic.Int64
	lat := make([][]time.Duration, benchClients)
	var failed atomic.Int64
	b.SetBytes(int64(len(data)))
	b.ResetTimer()
	start := time.Now()
	var wg sync.WaitGroup
	for c := 0; c < benchClients; c++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := next.Add(1) - 1
				if i >= int64(b.N) {
					return
				}
				t0 := time.Now()
				if err := doBench(client, method, addrs[int(i)%len(addrs)], fmt.Sprintf("k%d", i%keys), data); err != nil {
					failed.Add(1)
				}
				lat[c] = append(lat[c], time.Since(t0))
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()
	var all []time.Duration
	for _, l := range lat {
		all = append(all, l...)
	}
	sort.Slice(all, func(i, j int) bool { return all[i] < all[j] })
	pct := func(p float64) float64 {
		if len(all) == 0 {
			return 0
		}
		return float64(all[int(p*float64(len(all)-1))].Microseconds()) / 1000
	}
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "req/s")
	b.ReportMetric(pct(0.50), "p50-ms")
	b.ReportMetric(pct(0.99), "p99-ms")
	b.ReportMetric(float64(failed.Load()), "errors")
}

func doBench(client *http.Client, method, addr, id string, data []byte) error {
	var body io.Reader
	if method == http.MethodPut {
		body = bytes.NewReader(data)
	}
	req, err := http.NewRequest(method, "http://"+addr+"/block/"+id, body)
	if err != nil {
		return err
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("%s %s: %d", method, id, resp.StatusCode)
	}
	return nil
}

// walSyncs sums the WAL fsyncs of the cluster's pebble engines.
func (c *testCluster) walSyncs() uint64 {
	var n uint64
	for _, node := range c.nodes {
		if e, ok := walSyncer(node.Engine()); ok {
			n += e.WALSyncs()
		}
	}
	return n
}

// BenchmarkJoinTransfer measures how fast a joining node receives the
// blocks it gains: three nodes (real ZooKeeper, Pebble, fsync on) hold
// joinBlocks blocks written straight into their engines, a fourth joins.
// Reported: received MB/s over the round, and blocks received per block
// gained. Run: make bench-join.
func BenchmarkJoinTransfer(b *testing.B) {
	const joinBlocks = 20000
	for range b.N {
		b.StopTimer()
		// The default GC interval: the tests' 200ms would rescan the store
		// during the round.
		c := zkCluster(b, 3, clusterOpts{grace: time.Minute, configure: func(_ int, cfg *config.Config) { cfg.GCInterval = time.Minute }})
		ids := preloadEngines(b, c, joinBlocks)
		b.StartTimer()
		joined := c.addNode(b)
		c.waitStable(b, 4)
		b.StopTimer()
		st := c.nodes[joined].ClusterStatus()
		if st.LastRound == nil || st.Transfer.ReceivedBlocks == 0 {
			b.Fatalf("the join moved nothing: %+v", st)
		}
		v := c.nodes[joined].coord.View()
		gained := 0
		for _, id := range ids {
			if v.Current.IsOwner(c.cfgs[joined].ReplicaName, id, v.RF) {
				gained++
			}
		}
		b.ReportMetric(float64(st.Transfer.ReceivedBytes)/1e6/st.LastRound.Seconds, "MB/s")
		b.ReportMetric(float64(st.Transfer.ReceivedBlocks)/float64(gained), "received/gained")
		b.ReportMetric(st.LastRound.Seconds, "round-s")
		c.stopAll()
	}
}

// preloadEngines writes n random blocks into the engines of their owners
// directly (as if replicated earlier) and returns their ids.
func preloadEngines(b *testing.B, c *testCluster, n int) []string {
	v := c.nodes[0].coord.View()
	clock := hlc.NewClock(nil, time.Second)
	perNode := map[string][]storage.Item{}
	ids := make([]string, n)
	for k := range n {
		id := fmt.Sprintf("pre-%06d", k)
		ids[k] = id
		rec := storage.NewRecord(randomBlock(b), hlc.Version{Timestamp: clock.Now(), Node: "n0"})
		for _, owner := range v.Current.OwnerNames(id, v.RF) {
			perNode[owner] = append(perNode[owner], storage.Item{ID: id, Record: rec})
		}
	}
	for i := range c.nodes {
		items := perNode[c.cfgs[i].ReplicaName]
		for len(items) > 0 {
			batch := items[:min(256, len(items))]
			items = items[len(batch):]
			if _, err := c.nodes[i].engine.ApplyBatch(batch); err != nil {
				b.Fatal(err)
			}
		}
	}
	return ids
}
