package telemetry

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"

	"github.com/rs/zerolog"
	coltrace "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/protobuf/proto"
)

func TestOffWithoutURL(t *testing.T) {
	tr, err := NewTracing(context.Background(), TracingOptions{Protocol: "grpc", ServiceName: "goblocks"})
	if err != nil || tr != nil {
		t.Fatalf("NewTracing without URL = %v, %v; want nil, nil", tr, err)
	}
	if tr.Tracer("x") != nil || tr.Shutdown(context.Background()) != nil {
		t.Fatal("nil Tracing must be inert")
	}
}

func TestRejectsUnknownProtocol(t *testing.T) {
	if _, err := NewTracing(context.Background(), TracingOptions{URL: "http://x:1", Protocol: "thrift"}); err == nil {
		t.Fatal("thrift accepted")
	}
}

// The HTTP protocols post OTLP protobuf (or JSON) to the URL as given.
func TestExportsOverHTTP(t *testing.T) {
	var mu sync.Mutex
	var got []*coltrace.ExportTraceServiceRequest
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		req := &coltrace.ExportTraceServiceRequest{}
		if r.URL.Path != "/v1/traces" || proto.Unmarshal(body, req) != nil {
			t.Errorf("unexpected export %s %s", r.Method, r.URL.Path)
		}
		mu.Lock()
		got = append(got, req)
		mu.Unlock()
		w.Header().Set("Content-Type", "application/x-protobuf")
		_, _ = w.Write(nil)
	}))
	defer srv.Close()
	tr, err := NewTracing(context.Background(), TracingOptions{URL: srv.URL + "/v1/traces", Protocol: "http/protobuf", ServiceName: "goblocks", Instance: "n1"})
	if err != nil {
		t.Fatal(err)
	}
	_, span := tr.Tracer("test").Start(context.Background(), "op")
	span.End()
	if err := tr.Shutdown(context.Background()); err != nil { // flushes
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(got) != 1 || len(got[0].ResourceSpans) != 1 {
		t.Fatalf("got %d exports", len(got))
	}
	rs := got[0].ResourceSpans[0]
	res := map[string]string{}
	for _, kv := range rs.Resource.Attributes {
		res[kv.Key] = kv.Value.GetStringValue()
	}
	if res["service.name"] != "goblocks" || res["service.instance.id"] != "n1" {
		t.Fatalf("resource %v", res)
	}
	if name := rs.ScopeSpans[0].Spans[0].Name; name != "op" {
		t.Fatalf("span %q", name)
	}
}

func TestTraceHookAddsTraceID(t *testing.T) {
	tr, err := NewTracing(context.Background(), TracingOptions{URL: "http://127.0.0.1:1", Protocol: "http/protobuf", ServiceName: "goblocks"})
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Shutdown(context.Background())
	var buf bytes.Buffer
	log := zerolog.New(&buf).Hook(TraceHook{})
	ctx, span := tr.Tracer("test").Start(context.Background(), "op")
	log.Info().Ctx(ctx).Msg("in span")
	log.Info().Ctx(context.Background()).Msg("no span")
	log.Info().Msg("no ctx")
	span.End()
	lines := bytes.Split(bytes.TrimSpace(buf.Bytes()), []byte("\n"))
	if len(lines) != 3 {
		t.Fatalf("%d lines", len(lines))
	}
	var first map[string]string
	_ = json.Unmarshal(lines[0], &first)
	if first["trace_id"] != span.SpanContext().TraceID().String() || first["span_id"] == "" {
		t.Fatalf("first line %s lacks the trace id", lines[0])
	}
	for _, l := range lines[1:] {
		if bytes.Contains(l, []byte("trace_id")) {
			t.Fatalf("line without span has a trace id: %s", l)
		}
	}
}
