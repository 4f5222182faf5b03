// Package api is the HTTP surface of a node: the public block API, the
// internal replica endpoints, health and metrics. Handlers validate input,
// call the coordinator or the local engine, and map errors to statuses in
// one place (errorStatus).
package api

import (
	"context"
	"crypto/subtle"
	"fmt"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/gorilla/mux"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/rs/zerolog"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/goblocks/goblocks/node/config"
	"github.com/goblocks/goblocks/node/hlc"
	"github.com/goblocks/goblocks/node/storage"
	"github.com/goblocks/goblocks/node/telemetry"
)

// Coordinator runs client requests across replicas (replication.Coordinator).
type Coordinator interface {
	Put(ctx context.Context, id string, data []byte, cl config.Consistency) (hlc.Version, error)
	Get(ctx context.Context, id string, cl config.Consistency) (storage.Record, error)
	Delete(ctx context.Context, id string, cl config.Consistency) (hlc.Version, error)
}

// Options wire a Server.
type Options struct {
	Self        string
	BlockSize   int
	Token       string // required on /internal/* when set
	Coordinator Coordinator
	Local       storage.Engine // this node's copies, for /internal/*
	Clock       *hlc.Clock     // observes versions that arrive from peers
	Metrics     *Metrics
	Gatherer    prometheus.Gatherer // served on /metrics
	Logger      zerolog.Logger
	// Ready reports whether the node may take client requests (e.g. it has
	// a membership session); nil means always.
	Ready func() error
	// AntiEntropy, when set, serves peers' anti-entropy digest and
	// listing requests.
	AntiEntropy AntiEntropy
	// OnTransferReceived counts migration batches this node received.
	OnTransferReceived func(blocks, bytes int64)
	// Extra routes (admin, ui) registered by other packages.
	Extra func(r *mux.Router)
	// Tracing, when non-nil, gives every request a server span joined to
	// the caller's trace (W3C traceparent).
	Tracing *telemetry.Tracing
}

type server struct {
	o     Options
	guard *versionGuard
}

// NewHandler returns the node's HTTP handler.
func NewHandler(o Options) http.Handler {
	if o.Metrics == nil {
		o.Metrics = NewMetrics(nil)
	}
	if o.Gatherer == nil {
		o.Gatherer = prometheus.NewRegistry()
	}
	s := &server{o: o}
	if o.Clock != nil {
		s.guard = newVersionGuard(o.Clock, o.Metrics.FutureVersions, o.Logger)
	}
	r := mux.NewRouter()
	// Ids never need escaping; keeping the raw path means "%2F" or ".."
	// reach the validator as written instead of being decoded or cleaned.
	r.SkipClean(true)
	r.UseEncodedPath()
	if o.Tracing != nil {
		r.Use(s.traced()...)
	}
	r.Use(s.requestLog)

	// Each path is registered once and dispatches on the method itself:
	// mux's own method matching answers 404 instead of 405 once another
	// route accepts the method.
	r.Handle("/block/{id}", Methods{
		http.MethodPut: s.putBlock, http.MethodGet: s.getBlock,
		http.MethodHead: s.getBlock, http.MethodDelete: s.deleteBlock,
	})
	internal := r.PathPrefix("/internal").Subrouter()
	internal.Use(s.requireToken)
	internal.Handle("/block/{id}", Methods{
		http.MethodPut: s.internalPut, http.MethodDelete: s.internalDelete,
		http.MethodGet: s.internalGet, http.MethodHead: s.internalGet,
	})
	internal.Handle("/batch/apply", Methods{http.MethodPost: s.batchApply})
	internal.Handle("/batch/fetch", Methods{http.MethodPost: s.batchFetch})
	if o.AntiEntropy != nil {
		internal.Handle("/antientropy/digest", Methods{http.MethodGet: s.antiEntropyDigest})
		internal.Handle("/antientropy/ids", Methods{http.MethodPost: s.antiEntropyIDs})
	}
	internal.NotFoundHandler = http.HandlerFunc(notFound)

	r.Handle("/health", Methods{http.MethodGet: s.health, http.MethodHead: s.health})
	metrics := promhttp.HandlerFor(o.Gatherer, promhttp.HandlerOpts{})
	r.Handle("/metrics", Methods{http.MethodGet: metrics.ServeHTTP})
	if o.Extra != nil {
		o.Extra(r)
	}
	r.NotFoundHandler = http.HandlerFunc(notFound)
	return r
}

func notFound(w http.ResponseWriter, req *http.Request) {
	writeError(w, fmt.Errorf("%w: %s", ErrNoRoute, req.URL.Path))
}

// Methods routes a path's requests by method and answers any other method
// with 405, an Allow header and a JSON error.
type Methods map[string]http.HandlerFunc

func (m Methods) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if h, ok := m[r.Method]; ok {
		h(w, r)
		return
	}
	allow := make([]string, 0, len(m))
	for method := range m {
		allow = append(allow, method)
	}
	sort.Strings(allow)
	w.Header().Set("Allow", strings.Join(allow, ", "))
	writeError(w, fmt.Errorf("%w: %s %s", ErrMethodNotAllowed, r.Method, r.URL.Path))
}

// NewServer returns an http.Server with timeouts, so a slow or stalled
// client cannot hold a connection or a goroutine forever.
func NewServer(addr string, h http.Handler) *http.Server {
	return &http.Server{
		Addr:              addr,
		Handler:           h,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
	}
}

func (s *server) fail(w http.ResponseWriter, r *http.Request, op string, err error) {
	status, code := writeError(w, err)
	s.o.Metrics.Errors.WithLabelValues(op, code).Inc()
	ev := s.o.Logger.Debug()
	if status >= 500 {
		ev = s.o.Logger.Warn()
	}
	ev.Ctx(r.Context()).Err(err).Str("operation", op).Int("status", status).Str("block_id", mux.Vars(r)["id"]).
		Str("request_id", requestID(r.Context())).Msg("request failed")
	if span := trace.SpanFromContext(r.Context()); span.IsRecording() {
		span.SetAttributes(attribute.String("error.description", err.Error()))
		if status >= 500 {
			span.SetStatus(codes.Error, err.Error())
		}
	}
}

func (s *server) blockID(r *http.Request) (string, error) {
	id := mux.Vars(r)["id"]
	return id, ValidateID(id)
}

func (s *server) putBlock(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	defer func() { s.o.Metrics.PutDuration.Observe(time.Since(start).Seconds()) }()
	s.o.Metrics.Put.Inc()
	id, err := s.blockID(r)
	if err != nil {
		s.fail(w, r, "put", err)
		return
	}
	cl, err := consistencyParam(r)
	if err != nil {
		s.fail(w, r, "put", err)
		return
	}
	if err := s.ready(); err != nil {
		s.fail(w, r, "put", err)
		return
	}
	data, err := readBlock(r, s.o.BlockSize)
	if err != nil {
		s.fail(w, r, "put", err)
		return
	}
	v, err := s.o.Coordinator.Put(r.Context(), id, data, cl)
	if err != nil {
		s.fail(w, r, "put", err)
		return
	}
	w.Header().Set("X-Goblocks-Version", v.String())
	writeJSON(w, http.StatusCreated, map[string]string{"id": id, "version": v.String()})
}

func (s *server) getBlock(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	defer func() { s.o.Metrics.GetDuration.Observe(time.Since(start).Seconds()) }()
	s.o.Metrics.Get.Inc()
	id, err := s.blockID(r)
	if err != nil {
		s.fail(w, r, "get", err)
		return
	}
	cl, err := consistencyParam(r)
	if err != nil {
		s.fail(w, r, "get", err)
		return
	}
	if err := s.ready(); err != nil {
		s.fail(w, r, "get", err)
		return
	}
	rec, err := s.o.Coordinator.Get(r.Context(), id, cl)
	if err != nil {
		s.fail(w, r, "get", fmt.Errorf("block %q: %w", id, err))
		return
	}
	h := w.Header()
	h.Set("Content-Type", "application/octet-stream")
	h.Set("Content-Length", strconv.Itoa(len(rec.Data)))
	h.Set("X-Goblocks-Version", rec.Version.String())
	h.Set("ETag", `"`+rec.Version.String()+`"`)
	w.WriteHeader(http.StatusOK)
	if r.Method != http.MethodHead {
		_, _ = w.Write(rec.Data)
	}
}

func (s *server) deleteBlock(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	defer func() { s.o.Metrics.DeleteDuration.Observe(time.Since(start).Seconds()) }()
	s.o.Metrics.Delete.Inc()
	id, err := s.blockID(r)
	if err != nil {
		s.fail(w, r, "delete", err)
		return
	}
	cl, err := consistencyParam(r)
	if err != nil {
		s.fail(w, r, "delete", err)
		return
	}
	if err := s.ready(); err != nil {
		s.fail(w, r, "delete", err)
		return
	}
	v, err := s.o.Coordinator.Delete(r.Context(), id, cl)
	if err != nil {
		s.fail(w, r, "delete", err)
		return
	}
	w.Header().Set("X-Goblocks-Version", v.String())
	w.WriteHeader(http.StatusNoContent)
}

func (s *server) health(w http.ResponseWriter, r *http.Request) {
	s.o.Metrics.Health.Inc()
	body := healthBody{Status: "ok", Node: s.o.Self, ClockSkew: s.guard.recent()}
	if body.ClockSkew != nil {
		body.Warnings = append(body.Warnings, fmt.Sprintf(
			"versions from %d peer(s) were up to %s ahead of this node's clock in the last minute and were refused: if several peers are ahead, this node's clock is behind",
			len(body.ClockSkew.Peers), body.ClockSkew.MaxAhead))
	}
	if err := s.ready(); err != nil {
		body.Status, body.Error = "unavailable", err.Error()
		writeJSON(w, http.StatusServiceUnavailable, body)
		return
	}
	writeJSON(w, http.StatusOK, body)
}

// healthBody is the JSON of /health.
type healthBody struct {
	Status    string   `json:"status"`
	Node      string   `json:"node"`
	Error     string   `json:"error,omitempty"`
	Warnings  []string `json:"warnings,omitempty"`
	ClockSkew *skew    `json:"clock_skew,omitempty"`
}

func (s *server) ready() error {
	if s.o.Ready == nil {
		return nil
	}
	return s.o.Ready()
}

// requireToken guards /internal/*: with a cluster token configured, only
// peers that present it may write or read replica copies directly.
func (s *server) requireToken(next http.Handler) http.Handler {
	if s.o.Token == "" {
		return next
	}
	want := []byte("Bearer " + s.o.Token)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if subtle.ConstantTimeCompare([]byte(r.Header.Get("Authorization")), want) != 1 {
			s.fail(w, r, "internal", ErrUnauthorized)
			return
		}
		next.ServeHTTP(w, r)
	})
}
