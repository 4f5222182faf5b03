package cli

import (
	"context"
	crand "crypto/rand"
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/goblocks/goblocks/client"
)

var benchCommand = command{
	name: "bench", args: "", summary: "load test: concurrent puts/gets, then ops/s and latency percentiles",
	help: `Runs -c workers for -d against the cluster, each doing puts, gets or a mix
(-op mixed, reads in proportion -read-ratio) on random keys out of -keys
ids PREFIX0..PREFIXn. For get and mixed the keys are written first. While
it runs a progress line is drawn on stderr; then it prints ops, errors,
ops/s and p50/p95/p99/max latency per operation (-json: as JSON).
Ctrl-C ends the run early and still prints the summary. Exit code 1 when
no operation succeeded or the preload failed.`,
	run: runBench,
}

type benchConfig struct {
	Op          string        `json:"op"`
	Concurrency int           `json:"concurrency"`
	Duration    time.Duration `json:"-"`
	Keys        int           `json:"keys"`
	Size        int           `json:"size"`
	ReadRatio   float64       `json:"read_ratio"`
	Prefix      string        `json:"prefix"`
}

func runBench(ctx context.Context, cmd *command, e Env, args []string) int {
	f := newFlags(cmd, e)
	var bc benchConfig
	f.IntVar(&bc.Concurrency, "c", 32, "concurrent workers")
	f.DurationVar(&bc.Duration, "d", 10*time.Second, "duration of the run")
	f.StringVar(&bc.Op, "op", "mixed", "put, get or mixed")
	f.Float64Var(&bc.ReadRatio, "read-ratio", 0.5, "share of gets in -op mixed")
	f.IntVar(&bc.Keys, "keys", 1000, "key space: number of distinct block ids")
	f.IntVar(&f.blockSize, "size", f.blockSize, "block size in bytes (same as -block-size)")
	f.StringVar(&bc.Prefix, "prefix", "bench-", "block id prefix")
	asJSON := f.Bool("json", false, "print the summary as JSON")
	progressOn := f.progressFlag()
	if _, code, ok := f.parse(e, args, 0, 0); !ok {
		return code
	}
	switch {
	case bc.Op != "put" && bc.Op != "get" && bc.Op != "mixed":
		return f.usageError(e, fmt.Sprintf("-op %q: want put, get or mixed", bc.Op))
	case bc.Concurrency < 1:
		return f.usageError(e, "-c must be at least 1")
	case bc.Duration <= 0:
		return f.usageError(e, "-d must be positive")
	case bc.Keys < 1:
		return f.usageError(e, "-keys must be at least 1")
	case bc.ReadRatio < 0 || bc.ReadRatio > 1:
		return f.usageError(e, "-read-ratio must be within 0..1")
	}
	switch bc.Op {
	case "put":
		bc.ReadRatio = 0
	case "get":
		bc.ReadRatio = 1
	}
	bc.Size = f.blockSize
	c, code, ok := f.client(e)
	if !ok {
		return code
	}
	defer c.Close()
	showProgress := progressOn(e)

	if bc.ReadRatio > 0 {
		if err := benchPreload(ctx, c, bc, e, showProgress); err != nil {
			return fail(e, cmd.name, fmt.Errorf("preload: %w", err))
		}
	}
	res := benchRun(ctx, c, bc, e, showProgress)
	if *asJSON {
		enc := json.NewEncoder(e.Stdout)
		enc.SetIndent("", "  ")
		_ = enc.Encode(res.report(bc))
	} else {
		res.print(e, bc)
	}
	if res.firstErr != nil {
		fmt.Fprintf(e.Stderr, "goblocks bench: %d errors, the first: %v\n", res.errors(), res.firstErr)
	}
	if res.ok() == 0 {
		return ExitFailure
	}
	return ExitOK
}

func benchKey(bc benchConfig, i int) string { return fmt.Sprintf("%s%d", bc.Prefix, i) }

func randomPayload(size int) []byte {
	b := make([]byte, size)
	_, _ = crand.Read(b)
	return b
}

// benchPreload writes every key once, so gets find them.
func benchPreload(ctx context.Context, c *client.Client, bc benchConfig, e Env, show bool) error {
	var next, done atomic.Int64
	p := startProgress(e.Stderr, show, func(time.Duration) string {
		n := done.Load()
		return fmt.Sprintf("preload %s %d/%d keys", bar(float64(n)/float64(bc.Keys), 30), n, bc.Keys)
	})
	defer p.finish()
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var wg sync.WaitGroup
	for range min(bc.Concurrency, bc.Keys) {
		wg.Go(func() {
			data := randomPayload(bc.Size)
			for ctx.Err() == nil {
				i := int(next.Add(1)) - 1
				if i >= bc.Keys {
					return
				}
				if _, err := c.Put(ctx, benchKey(bc, i), data); err != nil {
					cancel(err)
					return
				}
				done.Add(1)
			}
		})
	}
	wg.Wait()
	return context.Cause(ctx)
}

// benchOp is one kind of operation's results.
type benchOp struct {
	lat    []time.Duration
	errors int64
}

type benchResult struct {
	elapsed  time.Duration
	ops      map[string]*benchOp // "put", "get"
	firstErr error
}

func (r *benchResult) ok() int {
	n := 0
	for _, o := range r.ops {
		n += len(o.lat)
	}
	return n
}

func (r *benchResult) errors() int64 {
	var n int64
	for _, o := range r.ops {
		n += o.errors
	}
	return n
}

func benchRun(ctx context.Context, c *client.Client, bc benchConfig, e Env, show bool) *benchResult {
	runCtx, cancel := context.WithTimeout(ctx, bc.Duration)
	defer cancel()
	var ops, errs atomic.Int64
	start := time.Now()
	p := startProgress(e.Stderr, show, func(elapsed time.Duration) string {
		n := ops.Load()
		rate := 0.0
		if s := elapsed.Seconds(); s > 0 {
			rate = float64(n) / s
		}
		return fmt.Sprintf("%s %4.1fs/%s %d ops %.0f ops/s %d errors",
			bar(elapsed.Seconds()/bc.Duration.Seconds(), 30), min(elapsed, bc.Duration).Seconds(), bc.Duration, n, rate, errs.Load())
	})

	type workerResult struct {
		put, get benchOp
		firstErr error
	}
	results := make([]workerResult, bc.Concurrency)
	var wg sync.WaitGroup
	for w := range results {
		wg.Go(func() {
			res := &results[w]
			rng := rand.New(rand.NewPCG(uint64(w), uint64(time.Now().UnixNano())))
			data := randomPayload(bc.Size)
			for runCtx.Err() == nil {
				id := benchKey(bc, rng.IntN(bc.Keys))
				op := &res.put
				t0 := time.Now()
				var err error
				if rng.Float64() < bc.ReadRatio {
					op = &res.get
					_, err = c.Get(runCtx, id)
				} else {
					data[0]++ // a new payload each time
					_, err = c.Put(runCtx, id, data)
				}
				d := time.Since(t0)
				if err != nil {
					if runCtx.Err() != nil {
						return // cut off by the end of the run, not a failure
					}
					op.errors++
					errs.Add(1)
					if res.firstErr == nil {
						res.firstErr = err
					}
					continue
				}
				op.lat = append(op.lat, d)
				ops.Add(1)
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	p.finish()

	r := &benchResult{elapsed: elapsed, ops: map[string]*benchOp{}}
	if bc.ReadRatio < 1 {
		r.ops["put"] = &benchOp{}
	}
	if bc.ReadRatio > 0 {
		r.ops["get"] = &benchOp{}
	}
	for _, w := range results {
		for name, o := range map[string]benchOp{"put": w.put, "get": w.get} {
			if t, ok := r.ops[name]; ok {
				t.lat = append(t.lat, o.lat...)
				t.errors += o.errors
			}
		}
		if r.firstErr == nil {
			r.firstErr = w.firstErr
		}
	}
	return r
}

// benchStats summarises one operation (or all of them).
type benchStats struct {
	Ops       int     `json:"ops"`
	Errors    int64   `json:"errors"`
	OpsPerSec float64 `json:"ops_per_sec"`
	P50       float64 `json:"p50_ms"`
	P95       float64 `json:"p95_ms"`
	P99       float64 `json:"p99_ms"`
	Max       float64 `json:"max_ms"`
}

func stats(lat []time.Duration, errs int64, elapsed time.Duration) benchStats {
	s := benchStats{Ops: len(lat), Errors: errs}
	if elapsed > 0 {
		s.OpsPerSec = float64(len(lat)) / elapsed.Seconds()
	}
	if len(lat) == 0 {
		return s
	}
	slices.Sort(lat)
	q := func(p float64) float64 {
		i := max(int(math.Ceil(p*float64(len(lat))))-1, 0)
		return float64(lat[i]) / float64(time.Millisecond)
	}
	s.P50, s.P95, s.P99, s.Max = q(0.50), q(0.95), q(0.99), q(1)
	return s
}

func (r *benchResult) all() benchStats {
	var lat []time.Duration
	var errs int64
	for _, o := range r.ops {
		lat = append(lat, o.lat...)
		errs += o.errors
	}
	return stats(lat, errs, r.elapsed)
}

func (r *benchResult) report(bc benchConfig) any {
	byOp := map[string]benchStats{}
	for name, o := range r.ops {
		byOp[name] = stats(o.lat, o.errors, r.elapsed)
	}
	return struct {
		benchConfig
		Seconds float64               `json:"duration_seconds"`
		Total   benchStats            `json:"total"`
		ByOp    map[string]benchStats `json:"by_op"`
	}{bc, r.elapsed.Seconds(), r.all(), byOp}
}

func (r *benchResult) print(e Env, bc benchConfig) {
	mix := bc.Op
	if bc.Op == "mixed" {
		mix = fmt.Sprintf("mixed (%.0f%% gets)", 100*bc.ReadRatio)
	}
	fmt.Fprintf(e.Stdout, "bench: %s, %d workers, %.2fs, %d keys of %d bytes\n\n",
		mix, bc.Concurrency, r.elapsed.Seconds(), bc.Keys, bc.Size)
	t := newTable(e.Stdout)
	fmt.Fprintln(t, "OP\tOPS\tERRORS\tOPS/S\tP50\tP95\tP99\tMAX")
	line := func(name string, s benchStats) {
		fmt.Fprintf(t, "%s\t%d\t%d\t%.1f\t%.2fms\t%.2fms\t%.2fms\t%.2fms\n",
			name, s.Ops, s.Errors, s.OpsPerSec, s.P50, s.P95, s.P99, s.Max)
	}
	for _, name := range []string{"put", "get"} {
		if o, ok := r.ops[name]; ok {
			line(name, stats(o.lat, o.errors, r.elapsed))
		}
	}
	if len(r.ops) > 1 {
		line("all", r.all())
	}
	_ = t.Flush()
}
