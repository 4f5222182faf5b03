package app

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/goblocks/goblocks/internal/nbdclient"
	"github.com/goblocks/goblocks/internal/testkit"
	"github.com/goblocks/goblocks/node/config"
)

// The observability files of the repository (prometheus/, grafana/) are
// proved here against a real Prometheus (Debian's 2.42, installed by
// `make deps`) scraping a live ZooKeeper-mode cluster: every PromQL
// expression of the dashboards, the rule files and the original README
// must parse and return data.

const (
	prometheusBin = "/usr/bin/prometheus"
	promtoolBin   = "/usr/bin/promtool"
)

// readmeQueries are the original design README's "Useful Prometheus
// Queries", exactly as written there.
var readmeQueries = []string{
	`rate(blocks_put_count[1m])`,
	`rate(blocks_get_count[1m])`,
	`rate(blocks_delete_count[1m])`,
	`histogram_quantile(0.99, rate(blocks_put_duration_bucket[5m]))`,
	`histogram_quantile(0.99, rate(blocks_get_duration_bucket[5m]))`,
	`histogram_quantile(0.50, rate(blocks_put_duration_bucket[5m]))`,
	`rate(blocks_put_duration_sum[5m]) / rate(blocks_put_duration_count[5m])`,
	`rate(blocks_errors_count[5m])`,
	`sum by (operation) (rate(blocks_errors_count[5m]))`,
	`sum by (instance) (rate(blocks_put_count[5m]))`,
	`blocks_stored_count`,
	`sum(blocks_stored_count)`,
}

// unproducibleSelectors are series an alert reads that a one-minute live
// run cannot create, each with the reason. For these the live check only
// requires the metric itself (so a misspelled name still fails); the
// promtool unit tests in prometheus/tests prove the alert fires.
var unproducibleSelectors = map[string]string{
	`blocks_migration_rounds_total{job="goblocks", outcome="aborted"}`: "needs a participant to die mid-round",
}

func TestPrometheusRulesAndDashboards(t *testing.T) {
	start := time.Now()
	for _, bin := range []string{prometheusBin, promtoolBin} {
		if _, err := os.Stat(bin); err != nil {
			t.Fatalf("%s not found (%v): run make deps, which installs Debian's prometheus package", bin, err)
		}
	}
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	ruleFiles, err := filepath.Glob(filepath.Join(root, "prometheus", "rules", "*.yml"))
	if err != nil || len(ruleFiles) == 0 {
		t.Fatalf("no rule files in prometheus/rules (%v)", err)
	}
	checkWithPromtool(t, root, ruleFiles)

	c := zkCluster(t, 3, clusterOpts{storage: "memory", grace: time.Second,
		configure: func(_ int, cfg *config.Config) { cfg.NBDAddress = "127.0.0.1:0" }})
	var targets []string
	for i := range c.nodes {
		targets = append(targets, c.cfgs[i].ReplicaAddress)
	}
	prom := startPrometheus(t, targets, ruleFiles)

	load := startLoad(t, c, []int{0, 1, 2})
	driveScenario(t, c, load)

	exprs := collectExpressions(t, root, ruleFiles)
	queries := prom.checkExpressions(t, exprs)
	prom.checkTargets(t, targets)
	groups, rules := prom.checkRules(t, ruleFiles)
	load.finish()
	alerts := 0
	for _, e := range exprs {
		if e.alert {
			alerts++
		}
	}
	burn, _ := prom.query(`goblocks:slo_burn_rate:rate5m`)
	t.Logf("prometheus: %d goblocks targets up (%s); %d rule groups / %d rules healthy; "+
		"%d expressions checked (%d dashboard targets, %d rules of which %d alerts, %d README queries) in %d distinct queries (alert selectors included); "+
		"load: %d requests, %d answered 503; 5m burn rate now %v; %.1fs",
		len(targets), strings.Join(targets, ", "), groups, rules,
		len(exprs), count(exprs, "dashboard"), count(exprs, "rule"), alerts, count(exprs, "README"), queries,
		load.requests.Load(), load.unavailable.Load(), burn,
		time.Since(start).Seconds())
}

// checkWithPromtool runs promtool's static checks and the rules' unit
// tests.
func checkWithPromtool(t *testing.T, root string, ruleFiles []string) {
	t.Helper()
	promtool := func(args ...string) {
		t.Helper()
		out, err := exec.Command(promtoolBin, args...).CombinedOutput()
		if err != nil {
			t.Fatalf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	promtool(append([]string{"check", "rules"}, ruleFiles...)...)
	cfg := filepath.Join(root, "prometheus", "prometheus.yml")
	// The lab's config loads its rules from /etc/prometheus/rules (the
	// compose mount): check its syntax as is, then a copy that points at
	// the repository's rules so the full check loads them too.
	promtool("check", "config", "--syntax-only", cfg)
	b, err := os.ReadFile(cfg)
	if err != nil {
		t.Fatal(err)
	}
	const mounted = "/etc/prometheus/rules/*.yml"
	if !strings.Contains(string(b), mounted) {
		t.Fatalf("%s does not load %s", cfg, mounted)
	}
	cp := filepath.Join(t.TempDir(), "prometheus.yml")
	local := strings.Replace(string(b), mounted, filepath.Join(root, "prometheus", "rules", "*.yml"), 1)
	if err := os.WriteFile(cp, []byte(local), 0o644); err != nil {
		t.Fatal(err)
	}
	promtool("check", "config", cp)
	tests, err := filepath.Glob(filepath.Join(root, "prometheus", "tests", "*.yml"))
	if err != nil || len(tests) == 0 {
		t.Fatalf("no promtool unit tests in prometheus/tests (%v)", err)
	}
	promtool(append([]string{"test", "rules"}, tests...)...)
}

// promServer is a Prometheus process running for one test.
type promServer struct {
	base   string
	client *http.Client
}

func startPrometheus(t *testing.T, targets, ruleFiles []string) *promServer {
	t.Helper()
	dir := t.TempDir()
	var quoted []string
	for _, tg := range targets {
		quoted = append(quoted, strconv.Quote(tg))
	}
	var rules []string
	for _, f := range ruleFiles {
		rules = append(rules, "  - "+strconv.Quote(f))
	}
	cfg := fmt.Sprintf(`global:
  scrape_interval: 1s
  evaluation_interval: 1s
rule_files:
%s
scrape_configs:
  - job_name: goblocks
    static_configs:
      - targets: [%s]
`, strings.Join(rules, "\n"), strings.Join(quoted, ", "))
	cfgPath := filepath.Join(dir, "prometheus.yml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	addr := freeLoopbackAddr(t)
	logf, err := os.Create(filepath.Join(dir, "prometheus.log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(prometheusBin,
		"--config.file="+cfgPath,
		"--storage.tsdb.path="+filepath.Join(dir, "data"),
		"--web.listen-address="+addr,
		"--log.level=warn")
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start prometheus: %v", err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-done
		logf.Close()
		if t.Failed() {
			if b, err := os.ReadFile(logf.Name()); err == nil {
				t.Logf("prometheus log:\n%s", tail(string(b), 4000))
			}
		}
	})
	p := &promServer{base: "http://" + addr, client: &http.Client{Timeout: 5 * time.Second}}
	testkit.Eventually(t, 30*time.Second, func() error {
		select {
		case <-done:
			b, _ := os.ReadFile(logf.Name())
			t.Fatalf("prometheus exited: %s", tail(string(b), 4000))
		default:
		}
		resp, err := p.client.Get(p.base + "/-/ready")
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("/-/ready: %d", resp.StatusCode)
		}
		return nil
	})
	// Scraping must run before the scenario, or counters that change only
	// once (a migration round) would never show an increase.
	began := time.Now()
	testkit.Eventually(t, 30*time.Second, func() error {
		v, err := p.query(`up{job="goblocks"} == 1`)
		if err != nil {
			return err
		}
		if len(v) != len(targets) {
			return fmt.Errorf("%d of %d targets scraped", len(v), len(targets))
		}
		return nil
	})
	t.Logf("prometheus on %s scraping %d targets (first scrapes after %.1fs)", addr, len(targets), time.Since(began).Seconds())
	return p
}

func freeLoopbackAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func tail(s string, n int) string {
	if len(s) > n {
		return "..." + s[len(s)-n:]
	}
	return s
}

// apiGet calls a Prometheus HTTP API endpoint and decodes its data.
func (p *promServer) apiGet(path string, params url.Values, data any) error {
	resp, err := p.client.Get(p.base + path + "?" + params.Encode())
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	var env struct {
		Status    string          `json:"status"`
		ErrorType string          `json:"errorType"`
		Error     string          `json:"error"`
		Data      json.RawMessage `json:"data"`
	}
	if err := json.Unmarshal(b, &env); err != nil {
		return fmt.Errorf("%s: %d %s", path, resp.StatusCode, b)
	}
	if env.Status != "success" {
		return &apiError{kind: env.ErrorType, msg: env.Error}
	}
	return json.Unmarshal(env.Data, data)
}

// apiError is an error answer of the API: bad_data is a PromQL that does
// not parse, which no amount of waiting fixes.
type apiError struct{ kind, msg string }

func (e *apiError) Error() string { return e.kind + ": " + e.msg }

type sample struct {
	Metric map[string]string `json:"metric"`
	Value  [2]any            `json:"value"`
}

// query runs an instant query and returns its vector (a scalar result
// counts as a one-sample vector).
func (p *promServer) query(q string) ([]sample, error) {
	var data struct {
		ResultType string          `json:"resultType"`
		Result     json.RawMessage `json:"result"`
	}
	if err := p.apiGet("/api/v1/query", url.Values{"query": {q}}, &data); err != nil {
		return nil, err
	}
	switch data.ResultType {
	case "vector":
		var v []sample
		err := json.Unmarshal(data.Result, &v)
		return v, err
	case "scalar":
		var s [2]any
		err := json.Unmarshal(data.Result, &s)
		return []sample{{Value: s}}, err
	}
	return nil, fmt.Errorf("result type %s, want an instant vector", data.ResultType)
}

// finite reports whether at least one sample holds a number: a result of
// only NaN (e.g. a quantile of a histogram that saw nothing) is no data.
func finite(v []sample) bool {
	for _, s := range v {
		str, _ := s.Value[1].(string)
		if f, err := strconv.ParseFloat(str, 64); err == nil && !math.IsNaN(f) && !math.IsInf(f, 0) {
			return true
		}
	}
	return false
}

// expression is one PromQL expression and where it comes from.
type expression struct {
	source string // "dashboard", "rule" or "README"
	where  string // file and panel or rule name
	expr   string
	alert  bool
}

func count(exprs []expression, source string) int {
	n := 0
	for _, e := range exprs {
		if e.source == source {
			n++
		}
	}
	return n
}

// grafanaVars replaces Grafana's interval variables by values fit for a
// 1s scrape interval, should a panel use them.
var grafanaVars = strings.NewReplacer("$__rate_interval", "1m", "${__rate_interval}", "1m",
	"$__range", "5m", "${__range}", "5m", "$__interval", "5s", "${__interval}", "5s")

func collectExpressions(t *testing.T, root string, ruleFiles []string) []expression {
	t.Helper()
	var out []expression
	dashboards, err := filepath.Glob(filepath.Join(root, "grafana", "dashboards", "*.json"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"goblocks-overview.json", "goblocks-slo.json", "goblocks-migration.json"} {
		if _, err := os.Stat(filepath.Join(root, "grafana", "dashboards", want)); err != nil {
			t.Fatalf("dashboard missing: %v", err)
		}
	}
	type panel struct {
		Title      string `json:"title"`
		Datasource *struct {
			UID string `json:"uid"`
		} `json:"datasource"`
		Targets []struct {
			Expr string `json:"expr"`
		} `json:"targets"`
		Panels []json.RawMessage `json:"panels"`
	}
	for _, f := range dashboards {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var d struct {
			UID           string            `json:"uid"`
			SchemaVersion int               `json:"schemaVersion"`
			Panels        []json.RawMessage `json:"panels"`
		}
		if err := json.Unmarshal(b, &d); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		if d.UID == "" || d.SchemaVersion < 36 {
			t.Fatalf("%s: uid %q, schemaVersion %d", f, d.UID, d.SchemaVersion)
		}
		n := 0
		var walk func([]json.RawMessage)
		walk = func(raw []json.RawMessage) {
			for _, r := range raw {
				var p panel
				if err := json.Unmarshal(r, &p); err != nil {
					t.Fatalf("%s: %v", f, err)
				}
				walk(p.Panels)
				if len(p.Targets) > 0 && (p.Datasource == nil || p.Datasource.UID != "prometheus") {
					t.Fatalf("%s: panel %q does not use the datasource uid prometheus", f, p.Title)
				}
				for _, tg := range p.Targets {
					if strings.TrimSpace(tg.Expr) == "" {
						t.Fatalf("%s: panel %q has a target without expr", f, p.Title)
					}
					n++
					out = append(out, expression{source: "dashboard", where: filepath.Base(f) + ": " + p.Title, expr: grafanaVars.Replace(tg.Expr)})
				}
			}
		}
		walk(d.Panels)
		if n == 0 {
			t.Fatalf("%s: no queries", f)
		}
	}
	for _, f := range ruleFiles {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var rf struct {
			Groups []struct {
				Name  string `yaml:"name"`
				Rules []struct {
					Record string `yaml:"record"`
					Alert  string `yaml:"alert"`
					Expr   string `yaml:"expr"`
				} `yaml:"rules"`
			} `yaml:"groups"`
		}
		if err := yaml.Unmarshal(b, &rf); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		for _, g := range rf.Groups {
			for _, r := range g.Rules {
				out = append(out, expression{source: "rule", where: filepath.Base(f) + ": " + r.Record + r.Alert,
					expr: strings.TrimSpace(r.Expr), alert: r.Alert != ""})
			}
		}
	}
	for _, q := range readmeQueries {
		out = append(out, expression{source: "README", where: "README", expr: q})
	}
	return out
}

// checkExpressions proves that every expression parses and has data.
//
// Dashboard queries, recording rules and README queries must return at
// least one sample with a number (not only NaN).
//
// An alert expression is a condition: when the cluster is healthy it is
// rightly empty, so its own result proves nothing. For an alert the test
// requires (1) that the expression itself is accepted and evaluated
// (status success, empty or not), and (2) that every series selector it
// reads — raw metrics with their label matchers and recording rules —
// returns data now. A misspelled metric, label or label value, or a
// recording rule that yields nothing, makes it fail, so it cannot pass
// vacuously; that the thresholds fire is proved by the promtool unit
// tests (checkWithPromtool). The rules API must also report each alert
// rule healthy (checkRules).
func (p *promServer) checkExpressions(t *testing.T, exprs []expression) int {
	t.Helper()
	checked := map[string]bool{}
	needData := func(where, q string) {
		t.Helper()
		if checked[q] {
			return
		}
		checked[q] = true
		testkit.Eventually(t, 30*time.Second, func() error {
			v, err := p.query(q)
			var ae *apiError
			if errors.As(err, &ae) && ae.kind == "bad_data" {
				t.Fatalf("%s: %q does not parse: %v", where, q, err)
			}
			if err != nil {
				return fmt.Errorf("%s: %q: %w", where, q, err)
			}
			if !finite(v) {
				return fmt.Errorf("%s: %q returned no data (%d samples, all NaN or none)", where, q, len(v))
			}
			return nil
		})
	}
	for _, e := range exprs {
		if !e.alert {
			needData(e.where, e.expr)
			continue
		}
		if _, err := p.query(e.expr); err != nil {
			t.Fatalf("%s: alert expression %q: %v", e.where, e.expr, err)
		}
		checked[e.expr] = true
		sels := selectors(e.expr)
		if len(sels) == 0 {
			t.Fatalf("%s: no series selector found in %q", e.where, e.expr)
		}
		for _, s := range sels {
			if why, ok := unproducibleSelectors[s]; ok {
				t.Logf("%s: %s %s; checking the metric only", e.where, s, why)
				s = s[:strings.IndexByte(s, '{')]
			}
			needData(e.where+" (selector)", s)
		}
	}
	return len(checked)
}

var promqlKeywords = map[string]bool{
	"and": true, "or": true, "unless": true, "bool": true, "offset": true,
	"by": true, "without": true, "on": true, "ignoring": true, "group_left": true, "group_right": true,
	"inf": true, "nan": true,
}

// promqlAggregations may be followed by a by/without clause before their
// parenthesis: `sum by (job) (…)`.
var promqlAggregations = map[string]bool{
	"sum": true, "min": true, "max": true, "avg": true, "group": true, "stddev": true, "stdvar": true,
	"count": true, "count_values": true, "bottomk": true, "topk": true, "quantile": true,
}

// selectors returns the series selectors of a PromQL expression (metric
// name with its label matchers, or a bare {…}), skipping functions,
// keywords, label lists, strings, ranges and numbers. It understands the
// PromQL this repository writes, not the whole grammar.
func selectors(expr string) []string {
	var out []string
	isIdent := func(c byte, first bool) bool {
		return c == '_' || c == ':' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || !first && c >= '0' && c <= '9'
	}
	// skipString returns the index just after the string opening at i.
	skipString := func(i int) int {
		q := expr[i]
		for i++; i < len(expr) && expr[i] != q; i++ {
			if expr[i] == '\\' {
				i++
			}
		}
		return i + 1
	}
	// skipTo returns the index just after the byte closing the bracket at
	// i, passing over quoted strings.
	skipTo := func(i int, closing byte) int {
		for i++; i < len(expr); {
			switch expr[i] {
			case '"', '\'', '`':
				i = skipString(i)
			case closing:
				return i + 1
			default:
				i++
			}
		}
		return i
	}
	for i := 0; i < len(expr); {
		c := expr[i]
		switch {
		case c == '"' || c == '\'' || c == '`':
			i = skipString(i)
		case c == '[':
			i = skipTo(i, ']')
		case c == '{':
			j := skipTo(i, '}')
			out = append(out, expr[i:j])
			i = j
		case c >= '0' && c <= '9' || c == '.':
			for i < len(expr) && (isIdent(expr[i], false) || expr[i] == '.') {
				i++
			}
		case isIdent(c, true):
			j := i
			for j < len(expr) && isIdent(expr[j], false) {
				j++
			}
			word := expr[i:j]
			k := j
			for k < len(expr) && (expr[k] == ' ' || expr[k] == '\n' || expr[k] == '\t') {
				k++
			}
			next := byte(0)
			if k < len(expr) {
				next = expr[k]
			}
			switch {
			case promqlKeywords[strings.ToLower(word)]:
				if next == '(' { // a label list: by (job), on (instance)
					j = skipTo(k, ')')
				}
			case next == '(' || promqlAggregations[word]: // a function or aggregation
			case next == '{':
				j = skipTo(k, '}')
				out = append(out, word+expr[k:j])
			default:
				out = append(out, word)
			}
			i = j
		default:
			i++
		}
	}
	return out
}

func TestSelectors(t *testing.T) {
	for expr, want := range map[string]string{
		`up{job="goblocks"} == 0`: `up{job="goblocks"}`,
		`goblocks:slo_burn_rate:rate1h > 14.4 and goblocks:slo_burn_rate:rate5m > 14.4`:                          `goblocks:slo_burn_rate:rate1h goblocks:slo_burn_rate:rate5m`,
		`sum by (job, operation) (rate(blocks_quorum_failures_total{job="goblocks"}[5m])) > 0.1`:                 `blocks_quorum_failures_total{job="goblocks"}`,
		`increase(x{a="}by(", b=~'q|r'}[30m] offset 5m) > 3 or on (instance) label_replace(y, "l", "v", "", "")`: `x{a="}by(", b=~'q|r'} y`,
		`min_over_time(blocks_migration_active{job="goblocks"}[30m]) == 1`:                                       `blocks_migration_active{job="goblocks"}`,
	} {
		if got := strings.Join(selectors(expr), " "); got != want {
			t.Errorf("selectors(%q) = %q, want %q", expr, got, want)
		}
	}
}

func (p *promServer) checkTargets(t *testing.T, want []string) {
	t.Helper()
	testkit.Eventually(t, 30*time.Second, func() error {
		var data struct {
			ActiveTargets []struct {
				Labels    map[string]string `json:"labels"`
				Health    string            `json:"health"`
				LastError string            `json:"lastError"`
			} `json:"activeTargets"`
		}
		if err := p.apiGet("/api/v1/targets", url.Values{"state": {"active"}}, &data); err != nil {
			return err
		}
		up := map[string]bool{}
		for _, tg := range data.ActiveTargets {
			if tg.Labels["job"] != "goblocks" {
				continue
			}
			if tg.Health != "up" {
				return fmt.Errorf("target %s is %s: %s", tg.Labels["instance"], tg.Health, tg.LastError)
			}
			up[tg.Labels["instance"]] = true
		}
		for _, w := range want {
			if !up[w] {
				return fmt.Errorf("target %s not up (up: %v)", w, up)
			}
		}
		if len(up) != len(want) {
			return fmt.Errorf("targets up %v, want %v", up, want)
		}
		return nil
	})
}

// checkRules asserts that every group of every rule file is loaded and
// that all its rules evaluated without error.
func (p *promServer) checkRules(t *testing.T, ruleFiles []string) (groups, rules int) {
	t.Helper()
	testkit.Eventually(t, 30*time.Second, func() error {
		var data struct {
			Groups []struct {
				Name  string `json:"name"`
				File  string `json:"file"`
				Rules []struct {
					Name      string `json:"name"`
					Health    string `json:"health"`
					LastError string `json:"lastError"`
				} `json:"rules"`
			} `json:"groups"`
		}
		if err := p.apiGet("/api/v1/rules", nil, &data); err != nil {
			return err
		}
		files := map[string]int{}
		groups, rules = 0, 0
		for _, g := range data.Groups {
			files[g.File]++
			groups++
			for _, r := range g.Rules {
				rules++
				if r.Health != "ok" {
					return fmt.Errorf("group %s rule %s: health %q %s", g.Name, r.Name, r.Health, r.LastError)
				}
			}
		}
		for _, f := range ruleFiles {
			if files[f] == 0 {
				return fmt.Errorf("no group loaded from %s (loaded: %v)", f, files)
			}
		}
		return nil
	})
	return groups, rules
}

// promLoad sends client traffic to some nodes until finish: PUT, GET and
// DELETE of its own ids.
type promLoad struct {
	c           *testCluster
	requests    atomic.Int64
	unavailable atomic.Int64
	stop        chan struct{}
	wg          sync.WaitGroup
	once        sync.Once
}

func startLoad(t *testing.T, c *testCluster, nodes []int) *promLoad {
	l := &promLoad{c: c, stop: make(chan struct{})}
	for w, node := range nodes {
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			for k := 0; ; k++ {
				select {
				case <-l.stop:
					return
				default:
				}
				id := fmt.Sprintf("load-%d-%d", w, k%50)
				l.do(http.MethodPut, c.url(node, "/block/"+id), randomBlock(t))
				l.do(http.MethodGet, c.url(node, "/block/"+id), nil)
				if k%5 == 0 {
					l.do(http.MethodDelete, c.url(node, "/block/"+id), nil)
				}
			}
		}()
	}
	t.Cleanup(l.finish)
	return l
}

func (l *promLoad) do(method, u string, body []byte) int {
	status, _, _, err := l.c.do(method, u, body)
	l.requests.Add(1)
	if status == http.StatusServiceUnavailable {
		l.unavailable.Add(1)
	}
	if err != nil {
		return 0
	}
	return status
}

func (l *promLoad) finish() {
	l.once.Do(func() { close(l.stop); l.wg.Wait() })
}

// driveScenario makes every metric the dashboards and rules read have
// samples: client errors of several classes, a read repair, a fourth node
// joining (a migration round) and then crashing, during which requests at
// consistency "all" fail with 503 (server errors against the SLO, quorum
// failures), and the survivors restore the replication factor (a second
// round, stale copies and their garbage collection).
func driveScenario(t *testing.T, c *testCluster, l *promLoad) {
	t.Helper()
	preload(t, c, 300)
	expect := func(method, path string, body []byte, status int) {
		t.Helper()
		if got := l.do(method, c.url(0, path), body); got != status {
			t.Fatalf("%s %s: status %d, want %d", method, path, got, status)
		}
	}
	// Client errors (4xx): they must not count against the SLO.
	block := randomBlock(t)
	expect(http.MethodGet, "/block/never-written", nil, http.StatusNotFound)
	expect(http.MethodGet, "/block/bad!id", nil, http.StatusBadRequest)
	expect(http.MethodDelete, "/block/bad!id", nil, http.StatusBadRequest)
	expect(http.MethodPut, "/block/short", block[:100], http.StatusBadRequest)
	expect(http.MethodPut, "/block/long", append(block, 1), http.StatusRequestEntityTooLarge)
	expect(http.MethodGet, "/block/pre-1?consistency=most", nil, http.StatusBadRequest)
	expect(http.MethodDelete, "/block/pre-2", nil, http.StatusNoContent)

	// Volume traffic over NBD for as long as the load runs: writes, reads,
	// a flush, a trim and a read past the end (an error reply).
	c.createVolume(t, 0, "promvol", "1MiB")
	nbdAddr := c.nodes[0].NBDAddr()
	l.wg.Go(func() {
		for k := 0; ; k++ {
			select {
			case <-l.stop:
				return
			default:
			}
			conn, err := nbdclient.Open(nbdAddr, "promvol")
			if err != nil {
				continue
			}
			off := uint64(k%256) * 4096
			_ = conn.WriteAt(block, off)
			_ = conn.ReadAt(make([]byte, 4096), off)
			for _, cmd := range []uint16{nbdclient.CmdFlush, nbdclient.CmdTrim, nbdclient.CmdRead} {
				at := off
				if cmd == nbdclient.CmdRead {
					at = 1 << 20 // past the end: EINVAL
				}
				if conn.Send(cmd, 0, 9, at, 4096, nil) == nil {
					_, _, _ = conn.ReadReply()
				}
			}
			_ = conn.Close()
		}
	})

	// A read repair: one replica loses its copy, a read at "all" sees it
	// lag and rewrites it.
	meta, err := c.nodes[1].Engine().GetMeta("pre-3")
	if err != nil {
		t.Fatal(err)
	}
	if ok, err := c.nodes[1].Engine().Remove("pre-3", meta.Version); !ok || err != nil {
		t.Fatalf("remove pre-3 from n1: %v %v", ok, err)
	}
	expect(http.MethodGet, "/block/pre-3?consistency=all", nil, http.StatusOK)
	testkit.Eventually(t, 10*time.Second, func() error {
		if _, err := c.nodes[1].Engine().GetMeta("pre-3"); err != nil {
			return fmt.Errorf("n1 not repaired: %w", err)
		}
		return nil
	})

	// A join under load: a migration round.
	joined := c.addNode(t)
	c.waitStable(t, 4)

	// The new node crashes. Until the survivors commit a ring without it,
	// requests at "all" for its blocks cannot reach every replica.
	v := c.nodes[0].coord.View()
	var owned []string
	for k := 0; k < 300 && len(owned) < 20; k++ {
		id := fmt.Sprintf("pre-%d", k)
		if k == 2 {
			continue // deleted above
		}
		for _, o := range v.Current.OwnerNames(id, v.RF) {
			if o == c.cfgs[joined].ReplicaName {
				owned = append(owned, id)
			}
		}
	}
	if len(owned) == 0 {
		t.Fatal("the joined node owns none of the preloaded blocks")
	}
	c.kill(joined)
	putFailed, getFailed := false, false
	for k := 0; !putFailed || !getFailed; k++ {
		if k == len(owned)*4 {
			t.Fatalf("no request at consistency all failed after the crash (put %v, get %v)", putFailed, getFailed)
		}
		id := owned[k%len(owned)]
		if l.do(http.MethodPut, c.url(1, "/block/"+id+"?consistency=all"), randomBlock(t)) == http.StatusServiceUnavailable {
			putFailed = true
		}
		if l.do(http.MethodGet, c.url(2, "/block/"+id+"?consistency=all"), nil) == http.StatusServiceUnavailable {
			getFailed = true
		}
		l.do(http.MethodGet, c.url(0, "/block/"+id), nil) // may fall back to another replica
	}
	c.waitStable(t, 3)
}
