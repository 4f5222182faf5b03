// Package rebalancebench measures a rebalance at scale with real node
// processes: a 3-node cluster (ZooKeeper, RF=3, Pebble, fsync on) is
// preloaded with -blocks blocks, then a fourth node joins and later a node
// leaves, each under a steady client load. It reports, for each change,
// the bytes moved against the optimum, the time to a stable ring, MB/s per
// receiver, client errors and p99 before and during, each node's resident
// memory, and the time of GC and anti-entropy passes.
//
//	make bench-rebalance                        # 1,000,000 blocks (4 GB, 12 GB of replicas)
//	make bench-rebalance REBALANCE_BLOCKS=50000 # a quick one
//
// It is a benchmark (it runs only with -bench) because it takes minutes
// and its figures are measurements, not pass/fail checks; it still fails
// when a client request errs or a block is lost.
package rebalancebench

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"maps"
	"math"
	mrand "math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	goblocks "github.com/goblocks/goblocks/client"
	"github.com/goblocks/goblocks/node/membership/zk/zktest"
)

var (
	blocks     = flag.Int("blocks", 1_000_000, "blocks to preload (4 KiB each)")
	binPath    = flag.String("bin", "../../bin/goblocks", "the goblocks binary")
	loadConc   = flag.Int("load", 4, "concurrent clients of the steady load (closed loop, 50% reads)")
	preloadC   = flag.Int("preload", 64, "concurrent writers of the preload")
	settleWait = flag.Duration("settle", 15*time.Second, "steady load measured before each change")
	profileDir = flag.String("profile", "", "if set, write CPU profiles of n4 and n1 during the first seconds of the join here")
)

const blockSize = 4096

// proc is one node process.
type proc struct {
	name, url string
	cmd       *exec.Cmd
	exited    chan struct{}
	rssMax    atomic.Int64 // KiB, highest sample of the current phase
}

type lab struct {
	b      *testing.B
	dir    string
	bin    string
	zkAddr string
	zkAuth string
	http   *http.Client
	nodes  map[string]*proc
}

func freePort(b *testing.B) int {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

func (l *lab) start(name string) *proc {
	port := freePort(l.b)
	cmd := exec.Command(l.bin, "-port", strconv.Itoa(port))
	cmd.Env = append(os.Environ(),
		"ZKAddress="+l.zkAddr, "ZKAuth="+l.zkAuth, "ReplicaName="+name, "ReplicaAddress=127.0.0.1",
		"DataDir="+filepath.Join(l.dir, name), "LogLevel=info",
		// Collected copies leave within the run; anti-entropy runs often
		// enough to be timed after the changes.
		"StaleGracePeriod=20s", "AntiEntropyInterval=20s", "LeaveTimeout=10m")
	logf, err := os.Create(filepath.Join(l.dir, name+".log"))
	if err != nil {
		l.b.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		l.b.Fatal(err)
	}
	p := &proc{name: name, url: "http://127.0.0.1:" + strconv.Itoa(port), cmd: cmd, exited: make(chan struct{})}
	go func() { _ = cmd.Wait(); logf.Close(); close(p.exited) }()
	l.nodes[name] = p
	l.b.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-p.exited
	})
	return p
}

// status is what the benchmark reads of GET /admin/cluster.
type status struct {
	RingMembers []string `json:"ring_members"`
	Migrating   bool     `json:"migrating"`
	Pending     bool     `json:"pending"`
	Blocks      int64    `json:"blocks"`
	OwnedBlocks int64    `json:"owned_blocks"`
	StaleBlocks int64    `json:"stale_blocks"`
	Transfer    struct {
		SentBlocks     int64 `json:"sent_blocks"`
		ReceivedBlocks int64 `json:"received_blocks"`
		ReceivedBytes  int64 `json:"received_bytes"`
	} `json:"transfer"`
	LastRound *struct {
		ID      string  `json:"id"`
		Seconds float64 `json:"seconds"`
	} `json:"last_round"`
}

func (l *lab) status(p *proc) (status, error) {
	var st status
	resp, err := l.http.Get(p.url + "/admin/cluster")
	if err != nil {
		return st, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return st, fmt.Errorf("%s: /admin/cluster %s", p.name, resp.Status)
	}
	return st, json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&st)
}

// waitStable waits until every node in want reports a committed ring of
// exactly want with no round running or pending, and returns how long.
func (l *lab) waitStable(want []string, timeout time.Duration) time.Duration {
	start := time.Now()
	slices.Sort(want)
	for {
		ok := true
		for _, name := range want {
			st, err := l.status(l.nodes[name])
			got := slices.Sorted(slices.Values(st.RingMembers))
			if err != nil || st.Migrating || st.Pending || !slices.Equal(got, want) {
				ok = false
				break
			}
		}
		if ok {
			return time.Since(start)
		}
		if time.Since(start) > timeout {
			l.b.Fatalf("ring of %v not stable after %v", want, timeout)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// waitStaleCollected waits until p holds no stale copies and returns its
// status then.
func (l *lab) waitStaleCollected(p *proc, timeout time.Duration) status {
	start := time.Now()
	for {
		st, err := l.status(p)
		if err == nil && st.StaleBlocks == 0 && st.OwnedBlocks == st.Blocks {
			return st
		}
		if time.Since(start) > timeout {
			l.b.Fatalf("%s still holds %d stale copies after %v", p.name, st.StaleBlocks, timeout)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// metric sums the _sum and _count of a histogram family on node p, for
// the series whose labels include match.
func (l *lab) histogram(p *proc, family string, match map[string]string) (sum float64, count uint64) {
	resp, err := l.http.Get(p.url + "/metrics")
	if err != nil {
		l.b.Fatal(err)
	}
	defer resp.Body.Close()
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		l.b.Fatal(err)
	}
	f, ok := fams[family]
	if !ok {
		l.b.Fatalf("%s: no metric %s", p.name, family)
	}
next:
	for _, m := range f.GetMetric() {
		for _, lp := range m.GetLabel() {
			if v, ok := match[lp.GetName()]; ok && v != lp.GetValue() {
				continue next
			}
		}
		sum += m.GetHistogram().GetSampleSum()
		count += m.GetHistogram().GetSampleCount()
	}
	return sum, count
}

// swapPasses counts each node's GC passes after a ring swap.
func (l *lab) swapPasses(names []string) map[string]uint64 {
	out := map[string]uint64{}
	for _, n := range names {
		_, out[n] = l.histogram(l.nodes[n], "blocks_gc_pass_seconds", map[string]string{"pass": "swap"})
	}
	return out
}

// waitSwapPasses waits until each node ran a swap pass since before, so
// its owned and stale counts describe the new ring, and says how long it
// waited.
func (l *lab) waitSwapPasses(names []string, before map[string]uint64) time.Duration {
	start := time.Now()
	deadline := start.Add(10 * time.Minute)
	for _, n := range names {
		for {
			if _, c := l.histogram(l.nodes[n], "blocks_gc_pass_seconds", map[string]string{"pass": "swap"}); c > before[n] {
				break
			}
			if time.Now().After(deadline) {
				l.b.Fatalf("%s ran no GC pass after the swap", n)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	return time.Since(start)
}

// profile saves a CPU profile of node p (its /admin/pprof/profile) once
// p answers, covering the next d.
func (l *lab) profile(p *proc, d time.Duration) {
	for range 100 {
		resp, err := l.http.Get(p.url + "/health")
		if err == nil {
			resp.Body.Close()
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	c := &http.Client{Timeout: d + 10*time.Second}
	resp, err := c.Get(fmt.Sprintf("%s/admin/pprof/profile?seconds=%d", p.url, int(d.Seconds())))
	if err != nil {
		l.b.Logf("profile of %s: %v", p.name, err)
		return
	}
	defer resp.Body.Close()
	f, err := os.Create(filepath.Join(*profileDir, p.name+".cpu"))
	if err != nil {
		l.b.Logf("profile of %s: %v", p.name, err)
		return
	}
	defer f.Close()
	_, _ = io.Copy(f, resp.Body)
}

// rss samples each live node's resident memory every 500 ms into rssMax.
func (l *lab) sampleRSS(ctx context.Context) {
	t := time.NewTicker(500 * time.Millisecond)
	defer t.Stop()
	for {
		for _, p := range l.nodes {
			if kb := vmRSS(p.cmd.Process.Pid); kb > p.rssMax.Load() {
				p.rssMax.Store(kb)
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func vmRSS(pid int) int64 {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			kb, _ := strconv.ParseInt(strings.Fields(v)[0], 10, 64)
			return kb
		}
	}
	return 0
}

// rssLine reports and resets each node's highest RSS of the phase.
func (l *lab) rssLine() string {
	var parts []string
	for _, name := range slices.Sorted(maps.Keys(l.nodes)) {
		p := l.nodes[name]
		parts = append(parts, fmt.Sprintf("%s %d MB", name, p.rssMax.Swap(0)/1024))
	}
	return strings.Join(parts, ", ")
}

// load is the steady client load: closed-loop workers, half reads of
// preloaded blocks, half overwrites, through every live node. Each phase
// keeps its own latencies and errors.
type load struct {
	mu     sync.Mutex
	lat    []time.Duration
	errs   int64
	ops    int64
	sample []string // first errors
	total  int64    // errors over every phase
	stop   chan struct{}
	wg     sync.WaitGroup
}

func (ld *load) record(d time.Duration, err error) {
	ld.mu.Lock()
	defer ld.mu.Unlock()
	ld.ops++
	if err != nil {
		ld.errs++
		ld.total++
		if len(ld.sample) < 5 {
			ld.sample = append(ld.sample, err.Error())
		}
		return
	}
	ld.lat = append(ld.lat, d)
}

// phase returns the figures since the last call and starts a new phase.
func (ld *load) phase(elapsed time.Duration) string {
	ld.mu.Lock()
	defer ld.mu.Unlock()
	slices.Sort(ld.lat)
	p := func(q float64) float64 {
		if len(ld.lat) == 0 {
			return math.NaN()
		}
		return float64(ld.lat[min(len(ld.lat)-1, int(q*float64(len(ld.lat))))].Microseconds()) / 1000
	}
	out := fmt.Sprintf("%.0f ops/s, p50 %.1f ms, p99 %.1f ms, %d errors", float64(ld.ops)/elapsed.Seconds(), p(0.5), p(0.99), ld.errs)
	if len(ld.sample) > 0 {
		out += fmt.Sprintf(" (%s)", strings.Join(ld.sample, "; "))
	}
	ld.lat, ld.errs, ld.ops, ld.sample = nil, 0, 0, nil
	return out
}

func (ld *load) errors() int64 { ld.mu.Lock(); defer ld.mu.Unlock(); return ld.total }

func startLoad(c *goblocks.Client, workers, keys int, body []byte) *load {
	ld := &load{stop: make(chan struct{})}
	for w := range workers {
		ld.wg.Add(1)
		go func() {
			defer ld.wg.Done()
			rng := mrand.New(mrand.NewPCG(uint64(w), 99))
			for {
				select {
				case <-ld.stop:
					return
				default:
				}
				id := blockID(rng.IntN(keys))
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				start := time.Now()
				var err error
				if rng.IntN(2) == 0 {
					_, err = c.Get(ctx, id)
				} else {
					_, err = c.Put(ctx, id, body)
				}
				cancel()
				ld.record(time.Since(start), err)
			}
		}()
	}
	return ld
}

func blockID(i int) string { return fmt.Sprintf("rb-%08d", i) }

func BenchmarkRebalance(b *testing.B) {
	for range b.N {
		runRebalance(b)
	}
}

func runRebalance(b *testing.B) {
	bin, err := filepath.Abs(*binPath)
	if err != nil {
		b.Fatal(err)
	}
	if _, err := os.Stat(bin); err != nil {
		b.Fatalf("%v: run make build (or pass -bin)", err)
	}
	zk := zktest.Start(b)
	secret := make([]byte, 12)
	_, _ = rand.Read(secret)
	dir := b.TempDir()
	b.Cleanup(func() {
		if b.Failed() {
			keep := filepath.Join(os.TempDir(), "goblocks-rebalance-logs")
			_ = os.MkdirAll(keep, 0o755)
			logs, _ := filepath.Glob(filepath.Join(dir, "*.log"))
			for _, f := range logs {
				if data, err := os.ReadFile(f); err == nil {
					_ = os.WriteFile(filepath.Join(keep, filepath.Base(f)), data, 0o644)
				}
			}
			fmt.Println("node logs kept in", keep)
		}
	})
	l := &lab{b: b, dir: dir, bin: bin, zkAddr: zk.Addr, zkAuth: fmt.Sprintf("goblocks:%x", secret),
		http: &http.Client{Timeout: 10 * time.Second}, nodes: map[string]*proc{}}
	for _, n := range []string{"n1", "n2", "n3"} {
		l.start(n)
	}
	ctx, stopSampling := context.WithCancel(context.Background())
	defer stopSampling()
	go l.sampleRSS(ctx)
	l.waitStable([]string{"n1", "n2", "n3"}, 2*time.Minute)
	urls := func(names ...string) []string {
		var out []string
		for _, n := range names {
			out = append(out, l.nodes[n].url)
		}
		return out
	}
	c, err := goblocks.New(urls("n1", "n2", "n3"))
	if err != nil {
		b.Fatal(err)
	}

	// Preload: every block distinct (its index in the first bytes).
	b.Logf("preloading %d blocks (%.1f GB, RF 3)...", *blocks, float64(*blocks)*blockSize/1e9)
	start := time.Now()
	var next atomic.Int64
	var failed atomic.Int64
	var wg sync.WaitGroup
	for range *preloadC {
		wg.Go(func() {
			body := make([]byte, blockSize)
			_, _ = rand.Read(body)
			for {
				i := int(next.Add(1)) - 1
				if i >= *blocks {
					return
				}
				copy(body, blockID(i))
				if _, err := c.Put(context.Background(), blockID(i), body); err != nil {
					failed.Add(1)
				}
			}
		})
	}
	wg.Wait()
	if failed.Load() > 0 {
		b.Fatalf("preload: %d writes failed", failed.Load())
	}
	preload := time.Since(start)
	fmt.Printf("  preload: %d blocks in %.0f s (%.0f writes/s); RSS %s\n", *blocks, preload.Seconds(), float64(*blocks)/preload.Seconds(), l.rssLine())

	body := make([]byte, blockSize)
	_, _ = rand.Read(body)
	ld := startLoad(c, *loadConc, *blocks, body)
	defer func() { close(ld.stop); ld.wg.Wait() }()
	time.Sleep(*settleWait)
	report := []string{fmt.Sprintf("before the join (3 nodes, %d blocks): %s; RSS %s", *blocks, ld.phase(*settleWait), l.rssLine())}

	// The join.
	old := []string{"n1", "n2", "n3"}
	swaps := l.swapPasses(old)
	n4 := l.start("n4")
	if *profileDir != "" {
		go l.profile(n4, 8*time.Second)
		go l.profile(l.nodes["n1"], 8*time.Second)
	}
	joinTook := l.waitStable([]string{"n1", "n2", "n3", "n4"}, 30*time.Minute)
	gcWait := l.waitSwapPasses(old, swaps)
	during := ld.phase(joinTook)
	st4, err := l.status(n4)
	if err != nil {
		b.Fatal(err)
	}
	gained := st4.OwnedBlocks + st4.StaleBlocks
	roundSecs := 0.0
	if st4.LastRound != nil {
		roundSecs = st4.LastRound.Seconds
	}
	mbps := float64(st4.Transfer.ReceivedBytes) / 1e6 / roundSecs
	report = append(report,
		fmt.Sprintf("join of n4: stable ring after %.1f s (round %.1f s); n4 received %d blocks (%.2f GB) for %d it gained (%.3fx the optimum), %.0f MB/s",
			joinTook.Seconds(), roundSecs, st4.Transfer.ReceivedBlocks, float64(st4.Transfer.ReceivedBytes)/1e9, gained,
			float64(st4.Transfer.ReceivedBlocks)/float64(gained), mbps),
		fmt.Sprintf("GC passes after the swap done %.1f s after the stable ring", gcWait.Seconds()),
		"client load during the join: "+during,
		"RSS during the join: "+l.rssLine())
	b.ReportMetric(mbps, "join-MB/s")
	b.ReportMetric(float64(st4.Transfer.ReceivedBlocks)/float64(gained), "join-moved/optimum")
	for _, n := range []string{"n1", "n2", "n3"} {
		sum, count := l.histogram(l.nodes[n], "blocks_gc_pass_seconds", map[string]string{"pass": "swap"})
		psum, pcount := l.histogram(l.nodes[n], "blocks_gc_pass_seconds", map[string]string{"pass": "periodic"})
		st, _ := l.status(l.nodes[n])
		report = append(report, fmt.Sprintf("%s: swap GC pass %.3f s (mean of %d), periodic pass over every record %.3f s (mean of %d); %d owned, %d stale",
			n, sum/float64(max(count, 1)), count, psum/float64(max(pcount, 1)), pcount, st.OwnedBlocks, st.StaleBlocks))
	}

	time.Sleep(*settleWait)
	report = append(report, "client load after the join: "+ld.phase(*settleWait))

	// The leave: n2 hands its blocks over and exits. Its owned count is
	// the optimum once the copies the join moved away are collected: while
	// a pass collects them, blocks falls before the stale count of the
	// last pass does, and owned (their difference) reads low.
	st2 := l.waitStaleCollected(l.nodes["n2"], 5*time.Minute)
	left := []string{"n1", "n3", "n4"}
	swaps = l.swapPasses(left)
	_ = l.nodes["n2"].cmd.Process.Signal(syscall.SIGTERM)
	leaveTook := l.waitStable(left, 30*time.Minute)
	l.waitSwapPasses(left, swaps)
	select {
	case <-l.nodes["n2"].exited:
	case <-time.After(10 * time.Minute):
		// Pebble's Close waits for running compactions, which after a
		// leave of 3 GB can take minutes.
		b.Fatal("n2 did not exit within 10 minutes of its leave")
	}
	delete(l.nodes, "n2")
	duringLeave := ld.phase(leaveTook)
	var recv, recvBytes int64
	var leaveRound float64
	var perNode []string
	for _, n := range []string{"n1", "n3", "n4"} {
		st, _ := l.status(l.nodes[n])
		recv += st.Transfer.ReceivedBlocks
		recvBytes += st.Transfer.ReceivedBytes
		if st.LastRound != nil {
			leaveRound = max(leaveRound, st.LastRound.Seconds)
		}
		perNode = append(perNode, fmt.Sprintf("%s %d", n, st.Transfer.ReceivedBlocks))
	}
	report = append(report,
		fmt.Sprintf("leave of n2: stable ring after %.1f s (round %.1f s); received %d blocks (%s) for the %d n2 held (%.3fx the optimum), %.0f MB/s in total",
			leaveTook.Seconds(), leaveRound, recv, strings.Join(perNode, ", "), st2.OwnedBlocks, float64(recv)/float64(st2.OwnedBlocks),
			float64(recvBytes)/1e6/leaveRound),
		"client load during the leave: "+duringLeave,
		"RSS during the leave: "+l.rssLine())
	b.ReportMetric(float64(recv)/float64(st2.OwnedBlocks), "leave-moved/optimum")

	// Anti-entropy with nothing to repair: wait for a round on each node
	// after the changes.
	aeBase := map[string]uint64{}
	for n, p := range l.nodes {
		_, aeBase[n] = l.histogram(p, "blocks_antientropy_round_seconds", nil)
	}
	deadline := time.Now().Add(2 * time.Minute)
	for n, p := range l.nodes {
		for {
			if _, c := l.histogram(p, "blocks_antientropy_round_seconds", nil); c > aeBase[n] || time.Now().After(deadline) {
				break
			}
			time.Sleep(time.Second)
		}
	}
	for _, n := range slices.Sorted(maps.Keys(l.nodes)) {
		sum, count := l.histogram(l.nodes[n], "blocks_antientropy_round_seconds", nil)
		report = append(report, fmt.Sprintf("%s: anti-entropy round %.2f s (mean of %d rounds)", n, sum/float64(max(count, 1)), count))
	}

	// Every preloaded block the load did not overwrite reads back intact.
	lost := 0
	check, _ := goblocks.New(urls("n1", "n3", "n4"))
	for i := 0; i < *blocks; i += max(1, *blocks/20000) {
		got, err := check.Get(context.Background(), blockID(i))
		if err != nil || (!bytes.HasPrefix(got, []byte(blockID(i))) && !bytes.Equal(got, body)) {
			lost++
		}
	}
	report = append(report, fmt.Sprintf("read back %d sampled blocks after both changes: %d lost", min(*blocks, 20000), lost))
	// Each sender's own account of its transfers (seconds and MB/s of the
	// streaming alone, without the round's coordination).
	for _, n := range []string{"n1", "n2", "n3", "n4"} {
		data, _ := os.ReadFile(filepath.Join(l.dir, n+".log"))
		for _, line := range strings.Split(string(data), "\n") {
			if strings.Contains(line, "Migration transfer finished") {
				var e struct {
					Blocks  int64   `json:"blocks"`
					MB      float64 `json:"mb"`
					Seconds float64 `json:"seconds"`
				}
				if os.Getenv("RB_RAW") != "" {
					fmt.Println(line)
				}
				if json.Unmarshal([]byte(line), &e) == nil && e.Blocks > 0 {
					report = append(report, fmt.Sprintf("%s sent %d blocks (%.0f MB) in %.2f s: %.0f MB/s", n, e.Blocks, e.MB, e.Seconds, e.MB/e.Seconds))
				}
			}
		}
	}
	// Printed, not logged: the testing package truncates a benchmark's log.
	for _, line := range report {
		fmt.Println("  " + line)
	}
	if lost > 0 || ld.errors() > 0 {
		b.Fatalf("%d blocks lost, %d client errors", lost, ld.errors())
	}
}
