// Package api is the HTTP surface of a node: the public block API, the
// internal replica endpoints, health and metrics. Handlers validate input,
// call the coordinator or the local engine, and map errors to statuses in
// one place (errorStatus).
package api

import (
	"context"
	"errors"
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
	"golang.org/x/sync/semaphore"

	"github.com/goblocks/goblocks/node/auth"
	"github.com/goblocks/goblocks/node/hlc"
	"github.com/goblocks/goblocks/node/peertls"
	"github.com/goblocks/goblocks/node/replication"
	"github.com/goblocks/goblocks/node/storage"
	"github.com/goblocks/goblocks/node/telemetry"
	"github.com/goblocks/goblocks/node/wire"
)

// Coordinator runs client requests across replicas (replication.Coordinator).
type Coordinator interface {
	Put(ctx context.Context, id string, data []byte, cl replication.Consistency) (hlc.Version, error)
	Get(ctx context.Context, id string, cl replication.Consistency) (storage.Record, error)
	Delete(ctx context.Context, id string, cl replication.Consistency) (hlc.Version, error)
}

// Options wire a Server.
type Options struct {
	Self      string
	BlockSize int
	// Token guards /internal/*: every internal request must carry it. Nil
	// or not yet known refuses them all.
	Token *auth.Token
	// AdminToken, when non-nil, guards /admin/* and /metrics.
	AdminToken *auth.Token
	// RequirePeerCert (mutual TLS) serves /internal/* only to requests
	// that presented a client certificate the cluster's CA signed.
	RequirePeerCert bool
	Coordinator     Coordinator
	Local           storage.Engine // this node's copies, for /internal/*
	Clock           *hlc.Clock     // observes versions that arrive from peers
	Metrics         *Metrics
	Gatherer        prometheus.Gatherer // served on /metrics
	Logger          zerolog.Logger
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
	// MaxInflightBatchBytes caps the internal batch bodies read at once
	// (default 32 MiB); past it batches get 503.
	MaxInflightBatchBytes int64
	// Conditions, when set, lists what an operator should know about the
	// node; /health reports them, and answers 503 if one is Unavailable.
	Conditions func() []Condition
}

// Condition is one thing /health reports beside the node's readiness.
type Condition struct {
	// Code is stable and machine-readable (disk_full, corrupt_store, ...).
	Code string `json:"code"`
	// Message says what is wrong and what to do.
	Message string `json:"message"`
	// Unavailable makes /health answer 503: the node cannot do part of
	// its job (e.g. take writes) and load balancers should avoid it.
	Unavailable bool `json:"unavailable"`
}

type server struct {
	o          Options
	guard      *versionGuard
	batchBytes *semaphore.Weighted
	streams    streams
	root       http.Handler // the router: what stream frames go through without a server
}

// NewHandler returns the node's HTTP handler.
func NewHandler(o Options) *Handler {
	if o.Metrics == nil {
		o.Metrics = NewMetrics(nil)
	}
	if o.Gatherer == nil {
		o.Gatherer = prometheus.NewRegistry()
	}
	if o.MaxInflightBatchBytes <= 0 {
		o.MaxInflightBatchBytes = 32 << 20
	}
	s := &server{o: o, batchBytes: semaphore.NewWeighted(max(o.MaxInflightBatchBytes, wire.MaxBatchBody(o.BlockSize)))}
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
	if o.AdminToken != nil {
		r.Use(s.requireAdmin)
	}

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
	internal.Handle("/batch/meta", Methods{http.MethodPost: s.batchMeta(false)})
	internal.Handle("/batch/digest", Methods{http.MethodPost: s.batchMeta(true)})
	internal.Handle("/stream", Methods{http.MethodGet: s.stream})
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
	s.root = r
	return &Handler{Handler: r, s: s}
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
// client cannot hold a connection or a goroutine forever. Its Shutdown
// also ends the peer streams of a *Handler.
func NewServer(addr string, h http.Handler) *http.Server {
	srv := &http.Server{
		Addr:              addr,
		Handler:           h,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
	}
	if sh, ok := h.(*Handler); ok {
		srv.RegisterOnShutdown(sh.CloseStreams)
	}
	return srv
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
	status := http.StatusOK
	if s.o.Conditions != nil {
		body.Conditions = s.o.Conditions()
		for _, c := range body.Conditions {
			if c.Unavailable {
				body.Status, status = "degraded", http.StatusServiceUnavailable
				body.Error = joinReason(body.Error, c.Message)
			} else if body.Status == "ok" {
				body.Status = c.Code // e.g. rebuilding
			}
		}
	}
	if err := s.ready(); err != nil {
		body.Status, status = "unavailable", http.StatusServiceUnavailable
		body.Error = joinReason(err.Error(), body.Error)
	}
	writeJSON(w, status, body)
}

func joinReason(a, b string) string {
	if a == "" || b == "" {
		return a + b
	}
	return a + "; " + b
}

// healthBody is the JSON of /health.
type healthBody struct {
	Status     string      `json:"status"`
	Node       string      `json:"node"`
	Error      string      `json:"error,omitempty"`
	Warnings   []string    `json:"warnings,omitempty"`
	Conditions []Condition `json:"conditions,omitempty"`
	ClockSkew  *skew       `json:"clock_skew,omitempty"`
}

func (s *server) ready() error {
	if s.o.Ready == nil {
		return nil
	}
	return s.o.Ready()
}

// requireToken guards /internal/*: only peers that present the cluster
// token (and, with mutual TLS, a certificate of the cluster's CA) may
// write or read replica copies directly.
func (s *server) requireToken(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if s.o.RequirePeerCert && !peertls.PeerVerified(r) {
			s.fail(w, r, "internal", fmt.Errorf("%w: internal endpoints need a client certificate signed by the cluster's CA (TLSCA)", ErrUnauthorized))
			return
		}
		if err := s.o.Token.Check(r.Header); err != nil {
			s.fail(w, r, "internal", authError(err))
			return
		}
		next.ServeHTTP(w, r)
	})
}

// requireAdmin guards /admin/* and /metrics with the admin token.
func (s *server) requireAdmin(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if p := r.URL.Path; p == "/metrics" || strings.HasPrefix(p, "/admin/") {
			if err := s.o.AdminToken.Check(r.Header); err != nil {
				s.fail(w, r, "admin", authError(err))
				return
			}
		}
		next.ServeHTTP(w, r)
	})
}

func authError(err error) error {
	if errors.Is(err, auth.ErrNotReady) {
		return fmt.Errorf("%w: %w", ErrNotReady, err)
	}
	return fmt.Errorf("%w: %w", ErrUnauthorized, err)
}
