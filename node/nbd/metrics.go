package nbd

import (
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics of the NBD server.
type Metrics struct {
	Requests       *prometheus.CounterVec
	Bytes          *prometheus.CounterVec
	Duration       *prometheus.HistogramVec
	Inflight       prometheus.Gauge
	Connections    prometheus.Gauge
	Refused        prometheus.Counter
	ProtocolErrors *prometheus.CounterVec
}

// NewMetrics registers the NBD metrics with reg (nil: unregistered).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		Requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "blocks_nbd_requests_total", Help: "NBD requests served, by command and errno (0 = success).",
		}, []string{"command", "errno"}),
		Bytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "blocks_nbd_bytes_total", Help: "Bytes of successful NBD requests, by command (read, write, trim, write_zeroes).",
		}, []string{"command"}),
		Duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "blocks_nbd_request_duration_seconds", Help: "Time from an NBD request's arrival to its reply, by command.",
			Buckets: []float64{.0005, .001, .002, .004, .008, .016, .032, .064, .128, .256, .512, 1, 2, 5},
		}, []string{"command"}),
		Inflight: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "blocks_nbd_inflight_requests", Help: "NBD requests being served.",
		}),
		Connections: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "blocks_nbd_connections", Help: "Open NBD connections (handshake or transmission).",
		}),
		Refused: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "blocks_nbd_connections_refused_total", Help: "NBD connections closed at once because MaxConnections were open.",
		}),
		ProtocolErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "blocks_nbd_protocol_errors_total", Help: "Refused NBD options and protocol violations, by phase.",
		}, []string{"phase"}),
	}
	if reg != nil {
		reg.MustRegister(m.Requests, m.Bytes, m.Duration, m.Inflight, m.Connections, m.Refused, m.ProtocolErrors)
	}
	return m
}

func (m *Metrics) observe(command string, errno uint32, length int, d time.Duration) {
	m.Requests.WithLabelValues(command, strconv.FormatUint(uint64(errno), 10)).Inc()
	if errno == 0 && command != "flush" {
		m.Bytes.WithLabelValues(command).Add(float64(length))
	}
	m.Duration.WithLabelValues(command).Observe(d.Seconds())
}

func (m *Metrics) protocolError(phase string) { m.ProtocolErrors.WithLabelValues(phase).Inc() }
