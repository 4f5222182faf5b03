package api

import (
	"net/http"

	"github.com/gorilla/mux"
	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
)

// traced returns the tracing middlewares: otelhttp opens the server span
// (continuing the caller's trace), then spanAttributes names the operation
// and records the original README's attributes once the handler is done.
func (s *server) traced() []mux.MiddlewareFunc {
	t := s.o.Tracing
	return []mux.MiddlewareFunc{
		otelhttp.NewMiddleware("goblocks",
			otelhttp.WithTracerProvider(t.Provider),
			otelhttp.WithPropagators(t.Propagator),
			otelhttp.WithSpanNameFormatter(func(_ string, r *http.Request) string {
				return r.Method + " " + routeTemplate(r)
			}),
			otelhttp.WithFilter(traceable),
		),
		s.spanAttributes,
	}
}

// traceable leaves out scrapes, which would bury requests under a trace
// every few seconds, and batch requests that belong to no single trace
// (multiplexed replica calls of unsampled requests, migration streams).
func traceable(r *http.Request) bool {
	switch r.URL.Path {
	case "/metrics", "/internal/stream":
		// A stream lives as long as its connection; its requests get
		// spans of their own (streamConn.startSpan).
		return false
	case "/internal/batch/apply", "/internal/batch/fetch", "/internal/batch/meta", "/internal/batch/digest":
		return r.Header.Get("traceparent") != ""
	}
	return true
}

func routeTemplate(r *http.Request) string {
	if route := mux.CurrentRoute(r); route != nil {
		if tpl, err := route.GetPathTemplate(); err == nil {
			return tpl
		}
	}
	return r.URL.Path
}

// operation names a request as the metrics do.
func operation(r *http.Request) string {
	tpl := routeTemplate(r)
	switch tpl {
	case "/block/{id}":
		switch r.Method {
		case http.MethodPut:
			return "put"
		case http.MethodDelete:
			return "delete"
		}
		return "get"
	case "/internal/block/{id}":
		switch r.Method {
		case http.MethodPut:
			return "internalput"
		case http.MethodDelete:
			return "internaldelete"
		}
		return "internalget"
	case "/internal/batch/apply":
		return "batchapply"
	case "/internal/batch/fetch":
		return "batchfetch"
	case "/internal/batch/meta":
		return "batchmeta"
	case "/internal/batch/digest":
		return "batchdigest"
	case "/health":
		return "health"
	}
	return tpl
}

func (s *server) spanAttributes(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		span := trace.SpanFromContext(r.Context())
		if !span.IsRecording() {
			next.ServeHTTP(w, r)
			return
		}
		attrs := []attribute.KeyValue{
			attribute.String("operation", operation(r)),
			attribute.String("replica.name", s.o.Self),
		}
		if id, ok := mux.Vars(r)["id"]; ok {
			attrs = append(attrs, attribute.String("block.id", id))
		}
		id, links := streamTraceAttributes(r.Context(), s.o.Tracing.Propagator)
		if id != "" {
			attrs = append(attrs, attribute.String("block.id", id))
		}
		for _, l := range links {
			span.AddLink(l)
		}
		span.SetAttributes(attrs...)
		rec := &statusRecorder{ResponseWriter: w, status: http.StatusOK}
		next.ServeHTTP(rec, r)
		span.SetAttributes(attribute.Int("http.status_code", rec.status))
		if rec.status >= 500 {
			span.SetStatus(codes.Error, http.StatusText(rec.status))
		}
	})
}
