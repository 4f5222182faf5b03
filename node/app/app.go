// Package app wires a node together: engine, membership (ZooKeeper, or a
// static peer list), coordinator, migration driver and HTTP API. main and
// the in-process cluster tests build nodes the same way.
package app

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/rs/zerolog"

	"github.com/goblocks/goblocks/node/adminapi"
	"github.com/goblocks/goblocks/node/antientropy"
	"github.com/goblocks/goblocks/node/api"
	"github.com/goblocks/goblocks/node/auth"
	"github.com/goblocks/goblocks/node/config"
	"github.com/goblocks/goblocks/node/hints"
	"github.com/goblocks/goblocks/node/hlc"
	"github.com/goblocks/goblocks/node/membership"
	zkstore "github.com/goblocks/goblocks/node/membership/zk"
	"github.com/goblocks/goblocks/node/migration"
	"github.com/goblocks/goblocks/node/nbd"
	"github.com/goblocks/goblocks/node/peertls"
	"github.com/goblocks/goblocks/node/replication"
	"github.com/goblocks/goblocks/node/ring"
	"github.com/goblocks/goblocks/node/storage"
	"github.com/goblocks/goblocks/node/storage/diskguard"
	"github.com/goblocks/goblocks/node/storage/memory"
	"github.com/goblocks/goblocks/node/storage/pebble"
	"github.com/goblocks/goblocks/node/telemetry"
	"github.com/goblocks/goblocks/node/transport"
	"github.com/goblocks/goblocks/node/volume"
)

// Node is one running goblocks node.
type Node struct {
	cfg      config.Config
	log      zerolog.Logger
	engine   storage.Engine
	peers    *transport.Client
	coord    *replication.Coordinator
	server   *http.Server
	listener net.Listener
	// adminHTTP asks other members for their status (/admin/members),
	// over HTTPS when adminTLS.
	adminHTTP *http.Client
	adminTLS  bool
	registry  *prometheus.Registry
	tracing   *telemetry.Tracing // nil: tracing off
	hints     *hints.Hints       // nil: HintWindow 0
	hintsDB   storage.Engine
	ae        *antientropy.Runner // nil: AntiEntropyInterval 0 and not rebuilding
	disk      *diskguard.Guard    // nil: memory storage
	// rebuilding is set while a store that could not be opened is being
	// refilled from the peers (RebuildCorruptStore).
	rebuilding atomic.Bool
	movedAside string // where the unreadable store was moved
	// readOnly: the disk was too full to open the store for writing.
	readOnly   bool
	clusterTok *auth.Token
	zkInvalid  prometheus.Counter
	// ZooKeeper mode only:
	store  *zkstore.Store
	driver *migration.Driver
	// nbd serves volumes as block devices (nil: NBDAddress empty).
	nbd   *nbd.Server
	nbdLn net.Listener

	kill     chan struct{}
	killOnce sync.Once
	// fatal carries the error that stops a node from within (its store
	// failed); buffered, only the first is kept.
	fatal chan error
}

// New builds a node from cfg. If ln is nil it listens on cfg.Port. Nothing
// runs until Run.
func New(cfg config.Config, ln net.Listener, log zerolog.Logger) (*Node, error) {
	n := &Node{cfg: cfg, log: log.Hook(telemetry.TraceHook{}).With().Str("node", cfg.ReplicaName).Logger(), kill: make(chan struct{}), fatal: make(chan error, 1)}
	var err error
	var tlsConf *peertls.Config
	if files := (peertls.Files{Cert: cfg.TLSCert, Key: cfg.TLSKey, CA: cfg.TLSCA}); files.Enabled() {
		// Before anything opens: a bad certificate stops the node at once.
		if tlsConf, err = peertls.Load(files); err != nil {
			return nil, err
		}
	}
	n.tracing, err = telemetry.NewTracing(context.Background(), telemetry.TracingOptions{
		URL: cfg.TracesURL(), Protocol: cfg.OTLPProtocol, ServiceName: cfg.ServiceName,
		Instance: cfg.ReplicaName, Version: cfg.Version,
	})
	if err != nil {
		return nil, err
	}
	if err := n.openStores(); err != nil {
		_ = n.tracing.Shutdown(context.Background())
		return nil, err
	}
	n.registry = prometheus.NewRegistry()
	n.registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	n.registry.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "blocks_stored_count", Help: "Current number of blocks stored on this node (owned and stale, tombstones excluded).",
	}, func() float64 { return float64(n.engine.Count()) }))
	if e, ok := walSyncer(n.engine); ok {
		// Writes per sync is how well group commit packs this disk's
		// fsyncs; the rate is what the disk is asked for.
		n.registry.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "blocks_storage_wal_syncs_total", Help: "WAL fsyncs the storage engine issued since the node started.",
		}, func() float64 { return float64(e.WALSyncs()) }))
	}
	n.registerHealthMetrics()

	clock := hlc.NewClock(nil, cfg.MaxClockOffset)
	n.seedClock(clock)
	n.clusterTok = auth.NewToken(cfg.ClusterToken)
	peerOpts := transport.Options{Token: n.clusterTok, MaxBlockSize: cfg.BlockSize}
	adminTransport := &http.Transport{MaxIdleConnsPerHost: 2, IdleConnTimeout: time.Minute}
	n.adminHTTP = &http.Client{Transport: adminTransport}
	if tlsConf != nil {
		peerOpts.TLS = tlsConf.Client
		adminTransport.TLSClientConfig, n.adminTLS = tlsConf.Client, true
	}
	if n.tracing != nil {
		peerOpts.Propagator = n.tracing.Propagator
	}
	n.peers = transport.NewClient(peerOpts)
	var hinter replication.Hinter
	if n.hintsDB != nil {
		n.hints = hints.New(hints.Options{
			Engine:  n.hintsDB,
			Sender:  n.peers,
			Resolve: n.memberAddr,
			Window:  cfg.HintWindow,
			Logger:  n.log,
			Metrics: hints.NewMetrics(n.registry),
		})
		hinter = n.hints
	}
	n.coord = replication.New(replication.Options{
		Self:             cfg.ReplicaName,
		Engine:           n.engine,
		Peers:            n.peers,
		Clock:            clock,
		ReadConsistency:  cfg.ReadConsistency,
		WriteConsistency: cfg.WriteConsistency,
		ReadRepairChance: cfg.ReadRepairChance,
		ReplicaTimeout:   cfg.RequestTimeout,
		Logger:           n.log,
		Metrics:          replication.NewMetrics(n.registry),
		Tracer:           n.tracing.Tracer("github.com/goblocks/goblocks/node/replication"),
		Hints:            hinter,
		ReadRepair:       replication.ReadRepairMode(cfg.ReadRepair),
	})
	fail := func(err error) (*Node, error) {
		n.coord.Close()
		n.peers.Close()
		n.adminHTTP.CloseIdleConnections()
		n.engine.Close()
		if n.hintsDB != nil {
			n.hintsDB.Close()
		}
		_ = n.tracing.Shutdown(context.Background())
		return nil, err
	}
	if cfg.Peers != "" {
		if err := n.staticMembership(); err != nil {
			return fail(err)
		}
	} else if err := n.zkMembership(); err != nil {
		return fail(err)
	}
	if cfg.AntiEntropyInterval > 0 || n.rebuilding.Load() {
		n.ae = antientropy.NewRunner(antientropy.Options{
			Self:     cfg.ReplicaName,
			Engine:   n.engine,
			Peers:    n.peers,
			View:     n.antiEntropyView,
			Interval: cfg.AntiEntropyInterval,
			Observe:  clock.Observe,
			Logger:   n.log,
			Metrics:  antientropy.NewMetrics(n.registry),
		})
	}
	opts := api.Options{
		Self:                  cfg.ReplicaName,
		BlockSize:             cfg.BlockSize,
		Token:                 n.clusterTok,
		MaxInflightBatchBytes: cfg.MaxInflightBatchBytes,
		Conditions:            n.conditions,
		Coordinator:           timeoutCoordinator{n.coord, cfg.RequestTimeout},
		Local:                 n.engine,
		Clock:                 clock,
		Metrics:               api.NewMetrics(n.registry),
		Gatherer:              n.registry,
		Logger:                n.log,
		Extra:                 n.adminRoutes,
		Tracing:               n.tracing,
		// Served even with anti-entropy off here, so peers that run it
		// can compare with this node.
		AntiEntropy: &antientropy.Local{Self: cfg.ReplicaName, Engine: n.engine, View: n.antiEntropyView},
	}
	if cfg.AdminToken != "" {
		opts.AdminToken = auth.NewToken(cfg.AdminToken)
	}
	opts.RequirePeerCert = tlsConf != nil
	if n.driver != nil {
		opts.Ready = func() error {
			if err := n.driver.Ready(); err != nil {
				return fmt.Errorf("%w: %w", replication.ErrUnavailable, err)
			}
			return nil
		}
		opts.OnTransferReceived = n.driver.Received
	}
	handler := api.NewHandler(opts)
	if ln == nil {
		if ln, err = net.Listen("tcp", fmt.Sprintf(":%d", cfg.Port)); err != nil {
			if n.store != nil {
				n.store.Close()
			}
			return fail(fmt.Errorf("listen: %w", err))
		}
	}
	limited := api.NewConnLimiter(ln, cfg.MaxConnections, n.registry)
	n.listener = limited
	if tlsConf != nil {
		// TLS above the limiter: the cap counts connections before their
		// handshake, so a handshake flood is capped too.
		n.listener = tls.NewListener(limited, tlsConf.Server)
	}
	n.server = api.NewServer(ln.Addr().String(), handler)
	n.server.ConnState = limited.ConnState
	if cfg.NBDAddress != "" {
		if n.nbdLn, err = net.Listen("tcp", cfg.NBDAddress); err != nil {
			_ = ln.Close()
			if n.store != nil {
				n.store.Close()
			}
			return fail(fmt.Errorf("NBD listen: %w", err))
		}
		n.nbd = nbd.NewServer(nbd.Options{
			Exports:          volumeExports{n},
			Device:           volume.NewIO(timeoutCoordinator{n.coord, cfg.RequestTimeout}),
			MaxConnections:   cfg.NBDMaxConnections,
			MaxInflightBytes: cfg.NBDMaxInflightBytes,
			Logger:           n.log.With().Str("component", "nbd").Logger(),
			Metrics:          nbd.NewMetrics(n.registry),
			Tracer:           n.tracing.Tracer("github.com/goblocks/goblocks/node/nbd"),
		})
	}
	return n, nil
}

func openEngine(cfg config.Config, dir string, opts pebble.Options, log zerolog.Logger) (storage.Engine, error) {
	if cfg.Storage == "memory" {
		return memory.New(), nil
	}
	opts.Logf = func(format string, args ...any) {
		log.Info().Str("component", "pebble").Str("dir", dir).Msgf(format, args...)
	}
	e, err := pebble.Open(dir, opts)
	if err != nil {
		return nil, fmt.Errorf("open storage in %s: %w", dir, err)
	}
	return e, nil
}

// seedClock moves the clock past the newest version stored here, so a
// node whose wall clock went back across a restart still versions its
// writes after its own data. A stored version beyond the allowed offset
// means this clock is behind (or the store holds a version that should
// never have been accepted): it is logged, not adopted.
func (n *Node) seedClock(clock *hlc.Clock) {
	var newest hlc.Timestamp
	err := n.engine.Scan("", func(_ string, m storage.Meta) bool {
		newest = max(newest, m.Version.Timestamp)
		return true
	})
	if err != nil {
		n.log.Warn().Err(err).Msg("reading the newest stored version to seed the clock")
		return
	}
	if newest == 0 {
		return
	}
	if err := clock.Observe(newest); err != nil {
		n.log.Warn().Err(err).Time("newest_version_time", newest.Physical()).
			Msg("the newest stored version is ahead of this node's clock: check the clock (NTP)")
	}
}

// memberAddr finds a node's address in the rings this node routes by.
func (n *Node) memberAddr(name string) (string, bool) {
	v := n.coord.View()
	if v == nil {
		return "", false
	}
	for _, r := range []*ring.Ring{v.Current, v.Target} {
		if r == nil {
			continue
		}
		if m, ok := r.Member(name); ok {
			return m.Addr, true
		}
	}
	return "", false
}

// antiEntropyView is the ring anti-entropy compares by, and whether a
// migration is under way (a dual-ring view, or a committed ring this node
// does not route by yet).
func (n *Node) antiEntropyView() (*ring.Ring, int, bool) {
	v := n.coord.View()
	if v == nil || v.Current == nil {
		return nil, 0, false
	}
	migrating := v.Target != nil
	if n.driver != nil {
		st := n.driver.Status()
		migrating = migrating || st.Migrating || st.Epoch != st.ViewEpoch
	}
	return v.Current, v.RF, migrating
}

// staticMembership routes by a fixed ring from the Peers list: a test and
// demo seam without ZooKeeper (no joins, leaves or migrations).
func (n *Node) staticMembership() error {
	peers, err := config.ParsePeers(n.cfg.Peers)
	if err != nil {
		return err
	}
	members := make([]ring.Member, len(peers))
	for i, p := range peers {
		members[i] = ring.Member{Name: p.Name, Addr: p.Addr, VNodes: n.cfg.VNodes}
	}
	r, err := ring.New(members)
	if err != nil {
		return err
	}
	n.coord.SetView(ring.View{Current: r, RF: n.cfg.ReplicationFactor})
	return nil
}

func (n *Node) zkMembership() error {
	self := membership.Member{Name: n.cfg.ReplicaName, Addr: n.cfg.AdvertiseAddress(), VNodes: n.cfg.VNodes}
	if n.cfg.PublicURL != "" {
		self.PublicURL = config.ExpandPublicURL(n.cfg.PublicURL, n.cfg.ReplicaName)
	}
	metrics := migration.NewMetrics(n.registry)
	var shared func(string)
	if n.cfg.ClusterToken == "" {
		// Validate allows this only with ZKAuth: the token znode is then
		// readable with the cluster's ZooKeeper credentials only.
		shared = n.clusterTok.Set
	}
	store, err := zkstore.New(zkstore.Options{
		SharedToken:    shared,
		Servers:        strings.Split(n.cfg.ZKAddress, ","),
		Root:           n.cfg.ZKRoot,
		SessionTimeout: n.cfg.ZKSessionTimeout,
		Self:           self,
		Logger:         n.log,
		Auth:           n.cfg.ZKAuth,
		OnInvalid:      func(string) { n.zkInvalid.Inc() },
		OnSessionState: func(connected bool) {
			metrics.SessionTransitions.Inc()
			if connected {
				metrics.SessionConnected.Set(1)
			} else {
				metrics.SessionConnected.Set(0)
			}
		},
	})
	if err != nil {
		return err
	}
	n.store = store
	n.driver = migration.New(migration.Options{
		Self:           self,
		RF:             n.cfg.ReplicationFactor,
		Store:          store,
		Engine:         n.engine,
		Sender:         transport.Transfers{Client: n.peers},
		SetView:        n.coord.SetView,
		StaleGrace:     n.cfg.StaleGracePeriod,
		TombstoneGrace: n.cfg.TombstoneGracePeriod,
		GCInterval:     n.cfg.GCInterval,
		TransferRate:   n.cfg.MigrationRateLimit,
		Logger:         n.log,
		Metrics:        metrics,
		SessionValid:   store.SessionValid,
	})
	return nil
}

// ClusterStatus is the node's view of the cluster (GET /admin/cluster).
func (n *Node) ClusterStatus() migration.ClusterStatus {
	if n.driver != nil {
		return n.driver.Status()
	}
	st := migration.ClusterStatus{Node: n.cfg.ReplicaName, Connected: true, Participants: []migration.ParticipantStatus{}}
	if v := n.coord.View(); v != nil {
		for _, m := range v.Current.Members() {
			st.Members = append(st.Members, adminapi.Member{Name: m.Name, Addr: m.Addr, VNodes: m.VNodes})
			st.RingMembers = append(st.RingMembers, m.Name)
		}
	}
	return st
}

// Addr is the address the node listens on.
func (n *Node) Addr() string { return n.listener.Addr().String() }

// NBDAddr is the address the NBD server listens on ("" when off).
func (n *Node) NBDAddr() string {
	if n.nbdLn == nil {
		return ""
	}
	return n.nbdLn.Addr().String()
}

// Registry is the node's metrics registry.
func (n *Node) Registry() *prometheus.Registry { return n.registry }

// Engine is the node's local storage (tests inspect placement with it).
func (n *Node) Engine() storage.Engine { return n.engine }

// Run serves until ctx is cancelled. Then, with ZooKeeper, the node leaves
// gracefully: it announces the leave, keeps serving (it is a transfer
// source) until the ring without it is committed or LeaveTimeout passes;
// then it stops accepting requests, lets in-flight ones finish, waits for
// background replica calls and closes the engine.
func (n *Node) Run(ctx context.Context) error {
	return n.run(ctx, true)
}

// fail stops the node with err, without a graceful leave.
func (n *Node) fail(err error) {
	select {
	case n.fatal <- err:
	default:
	}
}

// Kill makes Run return as if the process had been killed, as far as the
// cluster can tell: no leave is announced and its session ends at once.
// Used by tests of node failure.
func (n *Node) Kill() { n.killOnce.Do(func() { close(n.kill) }) }

func (n *Node) run(ctx context.Context, graceful bool) error {
	errc := make(chan error, 2)
	go func() { errc <- n.server.Serve(n.listener) }()
	if n.nbd != nil {
		go func() {
			if err := n.nbd.Serve(n.nbdLn); err != nil {
				errc <- fmt.Errorf("NBD server: %w", err)
			}
		}()
	}
	bgCtx, stopBackground := context.WithCancel(context.Background())
	bg := n.startBackground(bgCtx)
	n.log.Info().Str("addr", n.Addr()).Str("advertise", n.cfg.AdvertiseAddress()).Msg("node serving")
	var serveErr error
	select {
	case <-ctx.Done():
	case <-n.kill:
		graceful = false
	case serveErr = <-n.fatal:
		graceful = false
	case serveErr = <-errc:
	}
	if n.driver != nil && graceful && serveErr == nil {
		leaveCtx, cancel := context.WithTimeout(context.Background(), n.cfg.LeaveTimeout)
		if err := n.driver.Leave(leaveCtx); err != nil {
			n.log.Warn().Err(err).Msg("graceful leave did not complete")
		} else {
			n.log.Info().Msg("left the ring")
		}
		cancel()
	}
	if n.nbd != nil {
		// After the leave (NBD clients keep working through it), before
		// the coordinator closes: requests in flight are cancelled.
		_ = n.nbd.Close()
	}
	stopBackground()
	serveErr = errors.Join(serveErr, bg.wait())
	if n.store != nil {
		n.store.Close() // ephemeral znodes go now, not after the session timeout
	}
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := n.server.Shutdown(shutdownCtx); err != nil {
		n.log.Warn().Err(err).Msg("shutdown")
	}
	n.coord.Close() // its last failed replica calls may still store hints
	n.peers.Close()
	n.adminHTTP.CloseIdleConnections()
	if err := n.engine.Close(); err != nil {
		serveErr = errors.Join(serveErr, err)
	}
	if n.hintsDB != nil {
		if err := n.hintsDB.Close(); err != nil {
			serveErr = errors.Join(serveErr, err)
		}
	}
	if err := n.tracing.Shutdown(shutdownCtx); err != nil {
		n.log.Warn().Err(err).Msg("flushing traces")
	}
	n.log.Info().Msg("node stopped")
	if errors.Is(serveErr, http.ErrServerClosed) {
		serveErr = nil
	}
	return serveErr
}

// timeoutCoordinator bounds each client request by the configured timeout.
type timeoutCoordinator struct {
	*replication.Coordinator
	timeout time.Duration
}

func (t timeoutCoordinator) Put(ctx context.Context, id string, data []byte, cl replication.Consistency) (hlc.Version, error) {
	ctx, cancel := context.WithTimeout(ctx, t.timeout)
	defer cancel()
	return t.Coordinator.Put(ctx, id, data, cl)
}

func (t timeoutCoordinator) Get(ctx context.Context, id string, cl replication.Consistency) (storage.Record, error) {
	ctx, cancel := context.WithTimeout(ctx, t.timeout)
	defer cancel()
	return t.Coordinator.Get(ctx, id, cl)
}

func (t timeoutCoordinator) Delete(ctx context.Context, id string, cl replication.Consistency) (hlc.Version, error) {
	ctx, cancel := context.WithTimeout(ctx, t.timeout)
	defer cancel()
	return t.Coordinator.Delete(ctx, id, cl)
}

// walSyncer returns the engine under the disk guard when it counts its
// WAL fsyncs (pebble does).
func walSyncer(e storage.Engine) (interface{ WALSyncs() uint64 }, bool) {
	if g, ok := e.(diskguard.Engine); ok {
		e = g.Engine
	}
	s, ok := e.(interface{ WALSyncs() uint64 })
	return s, ok
}
