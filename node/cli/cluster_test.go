package cli

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/goblocks/goblocks/node/app"
	"github.com/goblocks/goblocks/node/config"
)

// testCluster is n in-process nodes with a static peer list and memory
// storage, each serving HTTP on a loopback port (after node/app's
// harness_test.go).
type testCluster struct {
	addrs []string
	stops []func()
}

func startCluster(t *testing.T, n int) *testCluster {
	t.Helper()
	return startClusterWith(t, n, nil)
}

// startClusterWith lets configure adjust each node's configuration.
func startClusterWith(t *testing.T, n int, configure func(*config.Config)) *testCluster {
	t.Helper()
	lns := make([]net.Listener, n)
	var peers []string
	c := &testCluster{stops: make([]func(), n)}
	for i := range lns {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		lns[i] = ln
		c.addrs = append(c.addrs, ln.Addr().String())
		peers = append(peers, fmt.Sprintf("n%d=%s", i, ln.Addr()))
	}
	dir := t.TempDir()
	for i, ln := range lns {
		cfg := config.Default()
		cfg.ReplicaName = fmt.Sprintf("n%d", i)
		cfg.ReplicaAddress = ln.Addr().String()
		cfg.Peers = strings.Join(peers, ",")
		cfg.ClusterToken = "cli-test-cluster-token"
		cfg.Storage = "memory"
		cfg.DataDir = filepath.Join(dir, cfg.ReplicaName)
		cfg.RequestTimeout = 3 * time.Second
		if configure != nil {
			configure(&cfg)
		}
		if err := cfg.Validate(); err != nil {
			t.Fatal(err)
		}
		node, err := app.New(cfg, ln, zerolog.Nop())
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() {
			defer close(done)
			if err := node.Run(ctx); err != nil {
				t.Errorf("node %d: %v", i, err)
			}
		}()
		c.stops[i] = func() { cancel(); <-done }
	}
	t.Cleanup(func() {
		for i := range c.stops {
			c.stop(i)
		}
	})
	return c
}

func (c *testCluster) stop(i int) {
	if c.stops[i] != nil {
		c.stops[i]()
		c.stops[i] = nil
	}
}

// nodes is the -nodes value for every node.
func (c *testCluster) nodes() string { return strings.Join(c.addrs, ",") }

// result is one in-process run of a subcommand.
type result struct {
	code           int
	stdout, stderr string
}

func (r result) String() string {
	return fmt.Sprintf("exit %d\nstdout: %s\nstderr: %s", r.code, r.stdout, r.stderr)
}

// run runs `goblocks name args...` with stdin and GOBLOCKS_NODES=nodes.
func run(t *testing.T, nodes string, stdin []byte, name string, args ...string) result {
	t.Helper()
	var out, errb bytes.Buffer
	env := Env{
		Stdin: bytes.NewReader(stdin), Stdout: &out, Stderr: &errb,
		Getenv: func(k string) string {
			if k == "GOBLOCKS_NODES" {
				return nodes
			}
			return ""
		},
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	code := Run(ctx, name, args, env)
	return result{code, out.String(), errb.String()}
}

// expect fails the test unless r exited with code and its streams
// contain the given substrings.
func expect(t *testing.T, r result, code int, stdoutHas, stderrHas string) {
	t.Helper()
	if r.code != code || !strings.Contains(r.stdout, stdoutHas) || !strings.Contains(r.stderr, stderrHas) {
		t.Fatalf("want exit %d, stdout with %q, stderr with %q; got %v", code, stdoutHas, stderrHas, r)
	}
}
