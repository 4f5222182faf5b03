package migration

import "github.com/prometheus/client_golang/prometheus"

// Metrics of membership, migrations and garbage collection.
type Metrics struct {
	Migrating          prometheus.Gauge
	Pending            prometheus.Gauge
	Participants       prometheus.Gauge
	ParticipantsReady  prometheus.Gauge
	TransferPlanned    prometheus.Gauge
	SentBlocks         prometheus.Counter
	SentBytes          prometheus.Counter
	ReceivedBlocks     prometheus.Counter
	ReceivedBytes      prometheus.Counter
	Rounds             *prometheus.CounterVec
	RoundDuration      prometheus.Histogram
	RingEpoch          prometheus.Gauge
	RingMembers        prometheus.Gauge
	RingOwnedShare     prometheus.Gauge
	StaleBlocks        prometheus.Gauge
	Collected          prometheus.Counter
	TombstonesPurged   prometheus.Counter
	GCRuns             prometheus.Counter
	GCSeconds          *prometheus.HistogramVec
	SessionConnected   prometheus.Gauge
	SessionTransitions prometheus.Counter
}

// NewMetrics creates and registers the metrics (reg nil: unregistered).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	g := func(name, help string) prometheus.Gauge {
		return prometheus.NewGauge(prometheus.GaugeOpts{Name: name, Help: help})
	}
	c := func(name, help string) prometheus.Counter {
		return prometheus.NewCounter(prometheus.CounterOpts{Name: name, Help: help})
	}
	m := &Metrics{
		Migrating:         g("blocks_migration_active", "1 while a migration round runs, else 0."),
		Pending:           g("blocks_migration_pending", "1 when membership changed during the running round (one more round follows)."),
		Participants:      g("blocks_migration_participants", "Participants of the running round."),
		ParticipantsReady: g("blocks_migration_participants_ready", "Participants of the running round that finished their transfers."),
		TransferPlanned:   g("blocks_migration_planned_blocks", "Blocks this node must hand over in the running round."),
		SentBlocks:        c("blocks_migration_sent_blocks_total", "Blocks this node handed over to new owners."),
		SentBytes:         c("blocks_migration_sent_bytes_total", "Bytes this node handed over to new owners."),
		ReceivedBlocks:    c("blocks_migration_received_blocks_total", "Blocks this node received in migrations."),
		ReceivedBytes:     c("blocks_migration_received_bytes_total", "Bytes this node received in migrations."),
		Rounds: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "blocks_migration_rounds_total", Help: "Migration rounds this node saw end, by outcome.",
		}, []string{"outcome"}),
		RoundDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "blocks_migration_duration_seconds", Help: "Duration of committed migration rounds, as seen by this node.",
			Buckets: prometheus.ExponentialBuckets(0.1, 2, 14),
		}),
		RingEpoch:        g("blocks_ring_epoch", "Epoch of the committed ring this node routes by."),
		RingMembers:      g("blocks_ring_members", "Members of the committed ring."),
		RingOwnedShare:   g("blocks_ring_owned_share", "Share of all replicas this node owns in the committed ring (0-1)."),
		StaleBlocks:      g("blocks_stale_count", "Stale copies (moved away, readable until the grace period ends) on this node."),
		Collected:        c("blocks_gc_collected_total", "Stale copies removed after the grace period."),
		TombstonesPurged: c("blocks_gc_tombstones_purged_total", "Tombstones removed after the tombstone grace period."),
		GCRuns:           c("blocks_gc_runs_total", "Garbage-collection passes."),
		GCSeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "blocks_gc_pass_seconds", Help: "Duration of garbage-collection passes, by pass (periodic: every record; swap and expiry: the arcs a ring change moved).",
			Buckets: prometheus.ExponentialBuckets(0.001, 4, 10),
		}, []string{"pass"}),
		SessionConnected:   g("blocks_zookeeper_session_connected", "1 while the node has a ZooKeeper session."),
		SessionTransitions: c("blocks_zookeeper_session_transitions_total", "ZooKeeper session state changes."),
	}
	// Pre-create the outcomes so the first round shows in rate().
	m.Rounds.WithLabelValues("committed")
	m.Rounds.WithLabelValues("aborted")
	for _, p := range []gcPass{periodicPass, swapPass, expiryPass} {
		m.GCSeconds.WithLabelValues(p.String())
	}
	if reg != nil {
		reg.MustRegister(m.Migrating, m.Pending, m.Participants, m.ParticipantsReady, m.TransferPlanned,
			m.SentBlocks, m.SentBytes, m.ReceivedBlocks, m.ReceivedBytes, m.Rounds, m.RoundDuration,
			m.RingEpoch, m.RingMembers, m.RingOwnedShare, m.StaleBlocks, m.Collected, m.TombstonesPurged,
			m.GCRuns, m.GCSeconds, m.SessionConnected, m.SessionTransitions)
	}
	return m
}
