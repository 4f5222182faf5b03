package cli

import (
	"bytes"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/goblocks/goblocks/client"
	"github.com/goblocks/goblocks/internal/testkit"
	"github.com/goblocks/goblocks/node/config"
	"github.com/goblocks/goblocks/node/peertls/peertlstest"
)

func randomBytes(t *testing.T, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

func writeFile(t *testing.T, data []byte) string {
	t.Helper()
	name := filepath.Join(t.TempDir(), "in.bin")
	if err := os.WriteFile(name, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return name
}

func TestHelp(t *testing.T) {
	for _, c := range commands {
		for _, h := range []string{"-h", "--help"} {
			r := run(t, "", nil, c.name, h)
			expect(t, r, ExitOK, "usage: goblocks "+c.name, "")
			if !strings.Contains(r.stdout, "exit codes:") || !strings.Contains(r.stdout, "-nodes") || r.stderr != "" {
				t.Errorf("%s %s: %v", c.name, h, r)
			}
		}
	}
}

func TestUsageErrors(t *testing.T) {
	cases := []struct {
		name string
		args []string
		msg  string
	}{
		{"get", []string{"-bogus", "x"}, "flag provided but not defined: -bogus"},
		{"get", nil, "missing arguments"},
		{"get", []string{"a", "b", "c"}, "too many arguments"},
		{"put", []string{"x"}, "missing arguments"},
		{"rm", []string{"-timeout", "soon", "x"}, "invalid value"},
		{"status", []string{"extra"}, "too many arguments"},
		{"ring", []string{"-nodes", "ftp://x:1"}, "bad node address"},
		{"get", []string{"-consistency", "most", "x"}, "consistency"},
		{"bench", []string{"-op", "scan"}, "-op \"scan\""},
		{"bench", []string{"-c", "0"}, "-c must be"},
		{"bench", []string{"-read-ratio", "2"}, "-read-ratio"},
		{"import", []string{"f"}, "missing arguments"},
		{"import", []string{"f", strings.Repeat("p", 250)}, "PREFIX must be"},
		{"export", []string{"-c", "0", "p", "f"}, "-c must be"},
	}
	for _, tc := range cases {
		r := run(t, "127.0.0.1:1", nil, tc.name, tc.args...)
		expect(t, r, ExitUsage, "", tc.msg)
		if !strings.Contains(r.stderr, "usage: goblocks "+tc.name) || r.stdout != "" {
			t.Errorf("%s %q: %v", tc.name, tc.args, r)
		}
	}
	r := run(t, "", nil, "frobnicate")
	expect(t, r, ExitUsage, "", `unknown command "frobnicate"`)
}

func TestPutGetRm(t *testing.T) {
	c := startCluster(t, 3)
	block := randomBytes(t, 4096)
	file := writeFile(t, block)

	r := run(t, c.nodes(), nil, "put", "b1", file)
	expect(t, r, ExitOK, "", "")
	if !regexp.MustCompile(`^\S+\n$`).MatchString(r.stdout) {
		t.Errorf("put should print the version alone: %q", r.stdout)
	}
	r = run(t, c.nodes(), nil, "get", "b1")
	expect(t, r, ExitOK, "", "")
	if r.stdout != string(block) {
		t.Fatal("get to stdout: payload differs")
	}
	// Flags after the arguments, output to a file, put from stdin.
	block2 := randomBytes(t, 4096)
	expect(t, run(t, "", block2, "put", "b2", "-", "-nodes", c.nodes()), ExitOK, "", "")
	out := filepath.Join(t.TempDir(), "out.bin")
	expect(t, run(t, "", nil, "get", "b2", out, "-nodes", c.nodes(), "-consistency", "all"), ExitOK, "", "")
	if got, _ := os.ReadFile(out); !bytes.Equal(got, block2) {
		t.Fatal("get to file: payload differs")
	}

	expect(t, run(t, c.nodes(), nil, "rm", "b1"), ExitOK, "", "")
	expect(t, run(t, c.nodes(), nil, "get", "b1"), ExitNotFound, "", "404 not_found")
	expect(t, run(t, c.nodes(), nil, "get", "never-written"), ExitNotFound, "", "not_found")
	expect(t, run(t, c.nodes(), nil, "rm", "never-written"), ExitOK, "", "")
}

func TestBadInput(t *testing.T) {
	c := startCluster(t, 3)
	good := writeFile(t, randomBytes(t, 4096))
	expect(t, run(t, c.nodes(), nil, "put", "bad/id", good), ExitUsage, "", "invalid_id")
	expect(t, run(t, c.nodes(), nil, "put", "..", good), ExitUsage, "", "invalid_id")
	expect(t, run(t, c.nodes(), nil, "get", "no spaces"), ExitUsage, "", "invalid_id")
	expect(t, run(t, c.nodes(), nil, "rm", strings.Repeat("x", 256)), ExitUsage, "", "invalid_id")
	expect(t, run(t, c.nodes(), nil, "put", "b1", writeFile(t, randomBytes(t, 100))), ExitUsage, "", "has 100 bytes, want exactly 4096")
	expect(t, run(t, c.nodes(), nil, "put", "b1", writeFile(t, randomBytes(t, 5000))), ExitUsage, "", "want exactly 4096")
	expect(t, run(t, c.nodes(), nil, "put", "b1", filepath.Join(t.TempDir(), "missing")), ExitUsage, "", "no such file")
	expect(t, run(t, c.nodes(), nil, "import", filepath.Join(t.TempDir(), "missing"), "p"), ExitUsage, "", "no such file")
	// The cluster's block size is 4096: a client told otherwise is refused.
	expect(t, run(t, c.nodes(), randomBytes(t, 512), "put", "-block-size", "512", "b1", "-"), ExitUsage, "", "bad_size")
}

func TestUnreachable(t *testing.T) {
	down := testkit.ClosedAddr(t)
	for _, args := range [][]string{
		{"get", "b1"}, {"rm", "b1"}, {"status"}, {"ring"},
		{"bench", "-d", "100ms", "-op", "put"}, {"export", "p", "-"},
	} {
		expect(t, run(t, down, nil, args[0], args[1:]...), ExitFailure, "", "connection refused")
	}
	expect(t, run(t, down, randomBytes(t, 4096), "put", "b1", "-"), ExitFailure, "", "connection refused")
}

// A node that is down is skipped: the next one coordinates.
func TestFailover(t *testing.T) {
	c := startCluster(t, 3)
	nodes := testkit.ClosedAddr(t) + "," + c.addrs[1]
	for i := range 4 { // round-robin starts on each node in turn
		expect(t, run(t, nodes, randomBytes(t, 4096), "put", "b"+strconv.Itoa(i), "-"), ExitOK, "", "")
	}
	c.stop(0)
	expect(t, run(t, c.nodes(), nil, "get", "b1"), ExitOK, "", "")
}

func TestStatus(t *testing.T) {
	c := startCluster(t, 3)
	for i := range 10 {
		expect(t, run(t, c.nodes(), randomBytes(t, 4096), "put", "b"+strconv.Itoa(i), "-"), ExitOK, "", "")
	}
	// Only one address given: the others are found in its member list.
	r := run(t, c.addrs[2], nil, "status")
	expect(t, r, ExitOK, "epoch:", "")
	for _, want := range []string{"view of:    n2", "migrating:  no, pending: no", "NAME", "OWNED", "STALE"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("status output lacks %q:\n%s", want, r.stdout)
		}
	}
	// RF 3 on 3 nodes: every node holds every block, once the third
	// replica of each quorum write has landed too.
	testkit.Eventually(t, 5*time.Second, func() error {
		r := run(t, c.addrs[2], nil, "status")
		for i, addr := range c.addrs {
			row := regexp.MustCompile(`(?m)^n` + strconv.Itoa(i) + `\s+` + regexp.QuoteMeta(addr) + `\s+ok\s+\d+\s+10\s`)
			if !row.MatchString(r.stdout) {
				return fmt.Errorf("no row for n%d with 10 blocks:\n%s", i, r.stdout)
			}
		}
		return nil
	})

	r = run(t, c.nodes(), nil, "status", "-json")
	expect(t, r, ExitOK, `"members"`, "")
	var js struct {
		View struct {
			Epoch int64 `json:"epoch"`
		} `json:"view"`
		Members []struct {
			Name   string `json:"name"`
			Health string `json:"health"`
			Status struct {
				Blocks int64 `json:"blocks"`
			} `json:"status"`
		} `json:"members"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &js); err != nil {
		t.Fatal(err)
	}
	var total int64
	for _, m := range js.Members {
		total += m.Status.Blocks
	}
	if len(js.Members) != 3 || total != 30 {
		t.Errorf("json: %d members, %d copies; want 3, 30", len(js.Members), total)
	}

	c.stop(1)
	r = run(t, c.nodes(), nil, "status")
	expect(t, r, ExitFailure, "unreachable", "n1 is unreachable")
	if !regexp.MustCompile(`(?m)^n0\s+\S+\s+ok\s`).MatchString(r.stdout) {
		t.Errorf("n0 should still be ok:\n%s", r.stdout)
	}
}

func TestRing(t *testing.T) {
	c := startCluster(t, 3)
	r := run(t, c.nodes(), nil, "ring")
	expect(t, r, ExitOK, "replication factor: 3", "")
	// RF = members: every node holds a third of all replicas.
	for i := range 3 {
		if !regexp.MustCompile(`(?m)^n` + strconv.Itoa(i) + `\s+\S+\s+20\s+33\.3%\s+\d+\.\d%$`).MatchString(r.stdout) {
			t.Errorf("no row for n%d:\n%s", i, r.stdout)
		}
	}
	if strings.Contains(r.stdout, "TOKEN") {
		t.Error("vnodes listed without -vnodes")
	}
	r = run(t, c.nodes(), nil, "ring", "-vnodes")
	expect(t, r, ExitOK, "TOKEN", "")
	if n := len(regexp.MustCompile(`(?m)^\d+\s+n\d$`).FindAllString(r.stdout, -1)); n != 60 {
		t.Errorf("%d vnode rows, want 60:\n%s", n, r.stdout)
	}
	r = run(t, c.nodes(), nil, "ring", "-json")
	var js struct {
		Ring struct {
			Members []struct {
				PrimaryShare float64 `json:"primary_share"`
			} `json:"members"`
		} `json:"ring"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &js); err != nil || len(js.Ring.Members) != 3 {
		t.Fatalf("json: %v\n%v", err, r)
	}
	sum := 0.0
	for _, m := range js.Ring.Members {
		sum += m.PrimaryShare
	}
	if sum < 0.999 || sum > 1.001 {
		t.Errorf("primary shares sum to %v", sum)
	}
}

func TestImportExport(t *testing.T) {
	c := startCluster(t, 3)
	data := randomBytes(t, 1<<20+123)
	in := writeFile(t, data)
	r := run(t, c.nodes(), nil, "import", "-progress", in, "big")
	expect(t, r, ExitOK, "1048699 bytes in 257 blocks big-000000..big-000256, manifest big-manifest", "100%")

	out := filepath.Join(t.TempDir(), "out.bin")
	expect(t, run(t, c.nodes(), nil, "export", "-c", "3", "big", out), ExitOK, "sha256", "")
	if got, _ := os.ReadFile(out); !bytes.Equal(got, data) {
		t.Fatal("exported file differs")
	}
	r = run(t, c.nodes(), nil, "export", "big", "-")
	expect(t, r, ExitOK, "", "verified")
	if r.stdout != string(data) {
		t.Fatal("exported stdout differs")
	}
	// The manifest is readable JSON.
	r = run(t, c.nodes(), nil, "get", "big-manifest")
	var m manifest
	if err := json.Unmarshal([]byte(r.stdout), &m); err != nil || m.Size != int64(len(data)) || m.Blocks != 257 {
		t.Fatalf("manifest %+v: %v", m, err)
	}

	// From stdin; empty input; a file of exactly one block.
	expect(t, run(t, c.nodes(), data[:5000], "import", "-", "small"), ExitOK, "5000 bytes in 2 blocks", "")
	expect(t, run(t, c.nodes(), nil, "import", "-", "empty"), ExitOK, "0 bytes in 0 blocks", "")
	r = run(t, c.nodes(), nil, "export", "empty", "-")
	expect(t, r, ExitOK, "", "0 bytes")
	if r.stdout != "" {
		t.Errorf("empty export wrote %d bytes", len(r.stdout))
	}

	expect(t, run(t, c.nodes(), nil, "export", "nosuch", out), ExitNotFound, "", "nosuch-manifest")

	// A block overwritten behind the manifest's back: no output file.
	expect(t, run(t, c.nodes(), randomBytes(t, 4096), "put", "big-000007", "-"), ExitOK, "", "")
	bad := filepath.Join(t.TempDir(), "bad.bin")
	expect(t, run(t, c.nodes(), nil, "export", "big", bad), ExitFailure, "", "sha256")
	if entries, _ := os.ReadDir(filepath.Dir(bad)); len(entries) != 0 {
		t.Errorf("left behind: %v", entries)
	}
	// A missing block is "not found".
	expect(t, run(t, c.nodes(), nil, "rm", "big-000003"), ExitOK, "", "")
	expect(t, run(t, c.nodes(), nil, "export", "big", bad), ExitNotFound, "", "big-000003")
}

func TestBench(t *testing.T) {
	c := startCluster(t, 3)
	r := run(t, c.nodes(), nil, "bench", "-d", "1s", "-c", "4", "-keys", "50", "-progress")
	expect(t, r, ExitOK, "OPS/S", "\r")
	for _, want := range []string{"mixed (50% gets), 4 workers", "P50", "P95", "P99", "MAX"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("bench output lacks %q:\n%s", want, r.stdout)
		}
	}
	for _, op := range []string{"put", "get", "all"} {
		if !regexp.MustCompile(`(?m)^` + op + `\s+[1-9]\d*\s+0\s+\d+\.\d\s+\d+\.\d\dms`).MatchString(r.stdout) {
			t.Errorf("no %s row with ops and latencies:\n%s", op, r.stdout)
		}
	}
	if !strings.Contains(r.stderr, "preload [") {
		t.Errorf("no preload progress: %q", r.stderr)
	}

	r = run(t, c.nodes(), nil, "bench", "-json", "-d", "300ms", "-op", "get", "-keys", "10", "-c", "2")
	expect(t, r, ExitOK, "", "")
	if r.stderr != "" {
		t.Errorf("progress drawn without a terminal: %q", r.stderr)
	}
	var js struct {
		Op    string `json:"op"`
		Total struct {
			Ops       int     `json:"ops"`
			OpsPerSec float64 `json:"ops_per_sec"`
			P99       float64 `json:"p99_ms"`
		} `json:"total"`
		ByOp map[string]any `json:"by_op"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &js); err != nil {
		t.Fatal(err)
	}
	if js.Op != "get" || js.Total.Ops == 0 || js.Total.OpsPerSec <= 0 || js.Total.P99 <= 0 || len(js.ByOp) != 1 {
		t.Errorf("json: %+v", js)
	}
}

// Against a cluster that runs mutual TLS, -ca makes the tools talk HTTPS
// and verify the nodes; without it they get a clear failure.
func TestToolsTalkTLSWithCA(t *testing.T) {
	ca := peertlstest.NewCA(t, t.TempDir(), "cluster")
	c := startClusterWith(t, 3, func(cfg *config.Config) {
		f := ca.Issue(t, cfg.ReplicaName)
		cfg.TLSCert, cfg.TLSKey, cfg.TLSCA = f.Cert, f.Key, f.CA
	})
	block := randomBytes(t, 4096)
	file := writeFile(t, block)
	expect(t, run(t, c.nodes(), nil, "put", "b1", file, "-ca", ca.File), ExitOK, "", "")
	r := run(t, c.nodes(), nil, "get", "b1", "-ca", ca.File)
	expect(t, r, ExitOK, "", "")
	if r.stdout != string(block) {
		t.Fatal("get over TLS: payload differs")
	}
	if r := run(t, c.nodes(), nil, "get", "b1"); r.code == ExitOK {
		t.Fatalf("plain HTTP to TLS nodes succeeded: %v", r)
	}
	expect(t, run(t, c.nodes(), nil, "get", "b1", "-ca", file), ExitUsage, "", "no PEM certificate")
}

// TestStatusPublicURLs: members with a public URL (the lab's host ports)
// get a URL column, and are probed there when not among -nodes.
func TestStatusPublicURLs(t *testing.T) {
	for u, want := range map[string]string{
		"http://localhost:3002":      "localhost:3002",
		"http://localhost:3002/":     "localhost:3002",
		"http://store.example/x":     "store.example:80",
		"https://store.example:8443": "",
		"":                           "",
	} {
		if got := publicHostPort(u); got != want {
			t.Errorf("publicHostPort(%q) = %q, want %q", u, got, want)
		}
	}
	var out bytes.Buffer
	view := &client.NodeStatus{}
	view.Node = "node-1"
	printStatus(Env{Stdout: &out}, view, []memberStatus{
		{Name: "node-1", Addr: "172.18.0.4:3000", PublicURL: "http://localhost:3001", Health: "ok"},
		{Name: "node-2", Addr: "172.18.0.5:3000", Health: "unreachable"},
	})
	for _, row := range []string{`(?m)^NAME\s+URL\s+ADDR\s+HEALTH`, `(?m)^node-1\s+http://localhost:3001\s+172\.18\.0\.4:3000\s+ok`, `(?m)^node-2\s+-\s+172\.18\.0\.5:3000\s+unreachable`} {
		if !regexp.MustCompile(row).MatchString(out.String()) {
			t.Errorf("status lacks %s:\n%s", row, out.String())
		}
	}
}
