package replication

import "github.com/prometheus/client_golang/prometheus"

// Metrics counts what the coordinator does beyond answering requests.
type Metrics struct {
	Repairs        *prometheus.CounterVec
	RepairsDropped prometheus.Counter
	Fallbacks      prometheus.Counter
	QuorumFailures *prometheus.CounterVec
	// Superseded counts replica acknowledgements of a write that found a
	// newer concurrent write already there.
	Superseded prometheus.Counter
	// WriteBacks counts reads whose replies disagreed and that wrote the
	// newest version back to a quorum before answering, by result.
	WriteBacks *prometheus.CounterVec
	// SpeculativeReads counts reads that asked one more owner because a
	// replica was slower than the usual latency.
	SpeculativeReads prometheus.Counter
	// DigestMismatches counts reads whose newest version came as a digest
	// (version only), so its payload had to be fetched from that replica.
	DigestMismatches prometheus.Counter
}

// NewMetrics creates the metrics and registers them with reg (nil: not
// registered, for tests).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		Repairs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "blocks_read_repairs_total", Help: "Replicas rewritten by read repair, by result.",
		}, []string{"result"}),
		RepairsDropped: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "blocks_read_repairs_dropped_total", Help: "Read repairs skipped because too many were in flight.",
		}),
		Fallbacks: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "blocks_read_fallbacks_total", Help: "Reads that asked another replica after one failed.",
		}),
		QuorumFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "blocks_quorum_failures_total", Help: "Requests that could not reach their consistency level.",
		}, []string{"operation"}),
		Superseded: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "blocks_write_superseded_total", Help: "Replica acknowledgements of a write that found a newer concurrent write already stored.",
		}),
		WriteBacks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "blocks_read_writebacks_total", Help: "Reads that wrote the newest version back to a quorum before answering, by result.",
		}, []string{"result"}),
		SpeculativeReads: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "blocks_speculative_reads_total", Help: "Reads that also asked the next owner because a replica was slow.",
		}),
		DigestMismatches: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "blocks_read_digest_mismatches_total", Help: "Reads whose newest version was a digest reply, so its payload was fetched from that replica.",
		}),
	}
	// Pre-create the labelled series so the first event shows in rate().
	m.Repairs.WithLabelValues("ok")
	m.Repairs.WithLabelValues("failed")
	m.QuorumFailures.WithLabelValues("read")
	m.QuorumFailures.WithLabelValues("write")
	m.WriteBacks.WithLabelValues("ok")
	m.WriteBacks.WithLabelValues("failed")
	if reg != nil {
		reg.MustRegister(m.Repairs, m.RepairsDropped, m.Fallbacks, m.QuorumFailures, m.Superseded, m.WriteBacks, m.SpeculativeReads, m.DigestMismatches)
	}
	return m
}
