package api

import "github.com/prometheus/client_golang/prometheus"

// Metrics are the original README's request metrics, with exactly its
// names, so its PromQL works unchanged.
type Metrics struct {
	Put, Get, Delete, InternalPut, InternalDelete, Health prometheus.Counter
	Errors                                                *prometheus.CounterVec
	PutDuration, GetDuration, DeleteDuration              prometheus.Histogram
	// FutureVersions counts versions refused for being too far ahead of
	// this node's clock.
	FutureVersions prometheus.Counter
	// BatchesRefused counts internal batches refused because
	// MaxInflightBatchBytes were being read already.
	BatchesRefused prometheus.Counter
	// StreamsOpen counts the peer streams this node serves.
	StreamsOpen prometheus.Gauge
}

// serverErrorCodes are the codes errorStatus maps to 5xx: the errors that
// count against the availability SLO (prometheus/rules).
var serverErrorCodes = []string{"internal", "corrupt", "unavailable", "shutting_down", "insufficient_storage", "overloaded", "not_ready", "store_failed"}

// latencyBuckets span 100µs (a local memory read) to 5s (the request
// timeout) so p50 through p99 of every operation fall inside a bucket.
var latencyBuckets = []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5}

// NewMetrics creates the request metrics and registers them with reg
// (nil: unregistered, for tests).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	counter := func(name, help string) prometheus.Counter {
		return prometheus.NewCounter(prometheus.CounterOpts{Name: name, Help: help})
	}
	hist := func(name, help string) prometheus.Histogram {
		return prometheus.NewHistogram(prometheus.HistogramOpts{Name: name, Help: help, Buckets: latencyBuckets})
	}
	m := &Metrics{
		Put:            counter("blocks_put_count", "Total PUT operations."),
		Get:            counter("blocks_get_count", "Total GET operations."),
		Delete:         counter("blocks_delete_count", "Total DELETE operations."),
		InternalPut:    counter("blocks_internalput_count", "Internal replication operations."),
		InternalDelete: counter("blocks_internaldelete_count", "Internal deletion operations."),
		Health:         counter("blocks_health_count", "Health check requests."),
		Errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "blocks_errors_count", Help: "Errors by operation type and error category.",
		}, []string{"operation", "error"}),
		PutDuration:    hist("blocks_put_duration", "PUT operation latency in seconds."),
		GetDuration:    hist("blocks_get_duration", "GET operation latency in seconds."),
		DeleteDuration: hist("blocks_delete_duration", "DELETE operation latency in seconds."),
		FutureVersions: counter("blocks_future_versions_refused_total", "Versions from peers refused for being more than MaxClockOffset ahead of this node's clock."),
		BatchesRefused: counter("blocks_internal_batches_refused_total", "Internal batches refused with 503 because MaxInflightBatchBytes of batch bodies were being read already."),
		StreamsOpen:    prometheus.NewGauge(prometheus.GaugeOpts{Name: "blocks_internal_streams_open", Help: "Peer streams (persistent connections carrying internal batches) this node serves."}),
	}
	// Series exist from the start at zero: a counter born at its first
	// error would hide that error from rate() and the SLO burn rates.
	for _, op := range []string{"put", "get", "delete"} {
		for _, code := range serverErrorCodes {
			m.Errors.WithLabelValues(op, code)
		}
	}
	if reg != nil {
		reg.MustRegister(m.Put, m.Get, m.Delete, m.InternalPut, m.InternalDelete, m.Health,
			m.Errors, m.PutDuration, m.GetDuration, m.DeleteDuration, m.FutureVersions, m.BatchesRefused, m.StreamsOpen)
	}
	return m
}
