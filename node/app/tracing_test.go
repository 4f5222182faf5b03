package app

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"
	coltrace "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/grpc"

	"github.com/goblocks/goblocks/internal/nbdclient"
	"github.com/goblocks/goblocks/internal/testkit"
	"github.com/goblocks/goblocks/node/config"
)

// otlpReceiver is an OTLP/gRPC trace collector built on the official
// service definition: it keeps every span it is sent.
type otlpReceiver struct {
	coltrace.UnimplementedTraceServiceServer
	mu    sync.Mutex
	spans []receivedSpan
}

type receivedSpan struct {
	service, instance string // resource attributes of the exporting node
	span              *tracepb.Span
}

func (r *otlpReceiver) Export(_ context.Context, req *coltrace.ExportTraceServiceRequest) (*coltrace.ExportTraceServiceResponse, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, rs := range req.ResourceSpans {
		res := attrs(rs.GetResource().GetAttributes())
		for _, ss := range rs.ScopeSpans {
			for _, sp := range ss.Spans {
				r.spans = append(r.spans, receivedSpan{service: res["service.name"], instance: res["service.instance.id"], span: sp})
			}
		}
	}
	return &coltrace.ExportTraceServiceResponse{}, nil
}

// trace returns the spans of one trace.
func (r *otlpReceiver) trace(id string) []receivedSpan {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []receivedSpan
	for _, s := range r.spans {
		if hex.EncodeToString(s.span.TraceId) == id {
			out = append(out, s)
		}
	}
	return out
}

func attrs(kvs []*commonpb.KeyValue) map[string]string {
	m := map[string]string{}
	for _, kv := range kvs {
		switch v := kv.Value.Value.(type) {
		case *commonpb.AnyValue_StringValue:
			m[kv.Key] = v.StringValue
		case *commonpb.AnyValue_IntValue:
			m[kv.Key] = fmt.Sprint(v.IntValue)
		}
	}
	return m
}

func startOTLPReceiver(t *testing.T) (*otlpReceiver, string) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	rcv := &otlpReceiver{}
	srv := grpc.NewServer()
	coltrace.RegisterTraceServiceServer(srv, rcv)
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(srv.Stop)
	return rcv, "http://" + ln.Addr().String()
}

// One client PUT is one trace: the coordinator's server span, a span per
// replica call, and each remote replica's server span as its child, with
// the original README's attributes, exported by all three nodes over OTLP.
func TestTracingOneTraceAcrossNodes(t *testing.T) {
	t.Setenv("OTEL_BSP_SCHEDULE_DELAY", "50") // export within 50 ms, not 5 s
	rcv, url := startOTLPReceiver(t)
	var logs syncBuffer
	c := startCluster(t, 3, clusterOpts{storage: "memory", tracesURL: url, logOut: &logs, logLevel: zerolog.DebugLevel})

	// The client starts the trace, as an instrumented caller would.
	traceID := "4bf92f3577b34da6a3ce929d0e0e4736"
	status, _, _, err := c.do(http.MethodPut, c.url(0, "/block/traced-1"), randomBlock(t),
		"traceparent", "00-"+traceID+"-00f067aa0ba902b7-01")
	if err != nil || status/100 != 2 {
		t.Fatalf("PUT: %d %v", status, err)
	}

	var spans []receivedSpan
	testkit.Eventually(t, 10*time.Second, func() error {
		spans = rcv.trace(traceID)
		servers := 0
		for _, s := range spans {
			if s.span.Kind == tracepb.Span_SPAN_KIND_SERVER {
				servers++
			}
		}
		if servers < 3 { // coordinator + two remote replicas
			return fmt.Errorf("%d server spans in the trace so far", servers)
		}
		return nil
	})

	byID := map[string]receivedSpan{}
	for _, s := range spans {
		byID[hex.EncodeToString(s.span.SpanId)] = s
	}
	var root receivedSpan
	replicaServers := map[string]bool{}
	replicaCalls := map[string]bool{}
	for _, s := range spans {
		a := attrs(s.span.Attributes)
		if s.service != "goblocks" {
			t.Errorf("span %q from service %q", s.span.Name, s.service)
		}
		switch {
		case s.span.Name == "PUT /block/{id}":
			root = s
			want := map[string]string{"block.id": "traced-1", "replica.name": "n0", "operation": "put", "http.status_code": "201"}
			for k, v := range want {
				if a[k] != v {
					t.Errorf("coordinator span %s = %q, want %q (all: %v)", k, a[k], v, a)
				}
			}
		case s.span.Name == "replica.apply":
			replicaCalls[a["replica.name"]] = true
			if a["block.id"] != "traced-1" {
				t.Errorf("replica.apply block.id = %q", a["block.id"])
			}
		case s.span.Name == "POST /internal/batch/apply":
			// The write's batch on the peer stream, which carried the
			// trace context of this sampled call.
			replicaServers[a["replica.name"]] = true
			if a["operation"] != "batchapply" || a["block.id"] != "traced-1" || a["http.status_code"] != "200" {
				t.Errorf("replica server span attributes %v", a)
			}
			// Its parent is the coordinator's call to this very replica.
			parent, ok := byID[hex.EncodeToString(s.span.ParentSpanId)]
			if !ok || parent.span.Name != "replica.apply" || attrs(parent.span.Attributes)["replica.name"] != a["replica.name"] {
				t.Errorf("replica %s span's parent is %q", a["replica.name"], parent.span.GetName())
			}
			if s.instance != a["replica.name"] {
				t.Errorf("span of %s exported by %s", a["replica.name"], s.instance)
			}
		}
	}
	if root.span == nil {
		t.Fatalf("no coordinator span among %d spans", len(spans))
	}
	if hex.EncodeToString(root.span.ParentSpanId) != "00f067aa0ba902b7" {
		t.Errorf("coordinator span did not continue the client's trace: parent %x", root.span.ParentSpanId)
	}
	for _, n := range []string{"n0", "n1", "n2"} {
		if !replicaCalls[n] {
			t.Errorf("no replica.apply span for %s", n)
		}
	}
	if !replicaServers["n1"] || !replicaServers["n2"] {
		t.Errorf("remote replica server spans: %v, want n1 and n2", replicaServers)
	}
	t.Logf("trace %s: %d spans from %d nodes", traceID, len(spans), 3)

	// A failed request records its error on the span, and its log line
	// carries the trace id.
	failTrace := "0af7651916cd43dd8448eb211c80319c"
	status, _, _, _ = c.do(http.MethodGet, c.url(1, "/block/never-written"), nil,
		"traceparent", "00-"+failTrace+"-b7ad6b7169203331-01")
	if status != http.StatusNotFound {
		t.Fatalf("GET missing: %d", status)
	}
	testkit.Eventually(t, 10*time.Second, func() error {
		for _, s := range rcv.trace(failTrace) {
			a := attrs(s.span.Attributes)
			if s.span.Name == "GET /block/{id}" && a["error.description"] != "" && a["http.status_code"] == "404" {
				return nil
			}
		}
		return fmt.Errorf("no GET span with error.description yet")
	})
	found := false
	for _, line := range strings.Split(logs.String(), "\n") {
		var rec map[string]any
		if json.Unmarshal([]byte(line), &rec) == nil && rec["message"] == "request failed" && rec["trace_id"] == failTrace {
			found = true
		}
	}
	if !found {
		t.Errorf("no 'request failed' log line with trace_id %s", failTrace)
	}
}

// Without an endpoint nothing is traced: no traceparent reaches replicas
// and no spans are made (tracing costs nothing when off).
func TestTracingOffByDefault(t *testing.T) {
	c := startCluster(t, 3, clusterOpts{storage: "memory"})
	for i := range c.nodes {
		if c.nodes[i].tracing != nil {
			t.Fatalf("node %d has tracing without an endpoint", i)
		}
	}
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// An NBD write is one trace: the server's nbd.write span, with the
// coordinator's replica calls below it.
func TestTracingNBDRequest(t *testing.T) {
	t.Setenv("OTEL_BSP_SCHEDULE_DELAY", "50")
	rcv, url := startOTLPReceiver(t)
	c := zkCluster(t, 3, clusterOpts{storage: "memory", tracesURL: url,
		configure: func(_ int, cfg *config.Config) { cfg.NBDAddress = "127.0.0.1:0" }})
	c.createVolume(t, 0, "traced", "1MiB")
	conn, err := nbdclient.Open(c.nodes[0].NBDAddr(), "traced")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if err := conn.WriteAt(randomBlock(t), 8192); err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, 10*time.Second, func() error {
		rcv.mu.Lock()
		var root *tracepb.Span
		for _, s := range rcv.spans {
			a := attrs(s.span.Attributes)
			if s.span.Name == "nbd.write" && a["volume"] == "traced" && a["offset"] == "8192" && a["length"] == "4096" {
				root = s.span
			}
		}
		rcv.mu.Unlock()
		if root == nil {
			return fmt.Errorf("no nbd.write span yet")
		}
		applies := 0
		for _, s := range rcv.trace(hex.EncodeToString(root.TraceId)) {
			if s.span.Name == "replica.apply" && attrs(s.span.Attributes)["block.id"] == "traced.0000000000000002" {
				applies++
			}
		}
		if applies < 3 {
			return fmt.Errorf("%d replica.apply spans of block 2 in the nbd.write trace", applies)
		}
		return nil
	})
}
