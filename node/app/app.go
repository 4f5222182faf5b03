// Package app wires a node together: engine, ring view, coordinator, HTTP
// API. main and the in-process cluster tests build nodes the same way.
package app

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/rs/zerolog"

	"github.com/goblocks/goblocks/node/api"
	"github.com/goblocks/goblocks/node/config"
	"github.com/goblocks/goblocks/node/hlc"
	"github.com/goblocks/goblocks/node/replication"
	"github.com/goblocks/goblocks/node/ring"
	"github.com/goblocks/goblocks/node/storage"
	"github.com/goblocks/goblocks/node/storage/memory"
	"github.com/goblocks/goblocks/node/storage/pebble"
	"github.com/goblocks/goblocks/node/transport"
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
	registry *prometheus.Registry
	view     atomic.Pointer[replication.View]
}

// New builds a node from cfg. If ln is nil it listens on cfg.Port. Nothing
// runs until Run.
func New(cfg config.Config, ln net.Listener, log zerolog.Logger) (*Node, error) {
	n := &Node{cfg: cfg, log: log.With().Str("node", cfg.ReplicaName).Logger()}
	var err error
	if n.engine, err = openEngine(cfg, n.log); err != nil {
		return nil, err
	}
	if err := n.initMembership(); err != nil {
		n.engine.Close()
		return nil, err
	}
	n.registry = prometheus.NewRegistry()
	n.registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	n.registry.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "blocks_stored_count", Help: "Current number of blocks stored on this node (owned and stale, tombstones excluded).",
	}, func() float64 { return float64(n.engine.Count()) }))

	clock := hlc.NewClock(nil)
	n.peers = transport.NewClient(transport.Options{Token: cfg.ClusterToken, MaxBlockSize: cfg.BlockSize})
	n.coord = replication.New(replication.Options{
		Self:             cfg.ReplicaName,
		Engine:           n.engine,
		Peers:            n.peers,
		View:             func() replication.View { return *n.view.Load() },
		Clock:            clock,
		ReadConsistency:  cfg.ReadConsistency,
		WriteConsistency: cfg.WriteConsistency,
		ReadRepairChance: cfg.ReadRepairChance,
		ReplicaTimeout:   cfg.RequestTimeout,
		Logger:           n.log,
		Metrics:          replication.NewMetrics(n.registry),
	})
	handler := api.NewHandler(api.Options{
		Self:        cfg.ReplicaName,
		BlockSize:   cfg.BlockSize,
		Token:       cfg.ClusterToken,
		Coordinator: timeoutCoordinator{n.coord, cfg.RequestTimeout},
		Local:       n.engine,
		Clock:       clock,
		Metrics:     api.NewMetrics(n.registry),
		Gatherer:    n.registry,
		Logger:      n.log,
	})
	if ln == nil {
		if ln, err = net.Listen("tcp", fmt.Sprintf(":%d", cfg.Port)); err != nil {
			n.coord.Close()
			n.engine.Close()
			return nil, fmt.Errorf("listen: %w", err)
		}
	}
	n.listener = ln
	n.server = api.NewServer(ln.Addr().String(), handler)
	return n, nil
}

func openEngine(cfg config.Config, log zerolog.Logger) (storage.Engine, error) {
	if cfg.Storage == "memory" {
		return memory.New(), nil
	}
	opts := pebble.Options{Logf: func(format string, args ...any) {
		log.Info().Str("component", "pebble").Msgf(format, args...)
	}}
	e, err := pebble.Open(cfg.DataDir, opts)
	if err != nil {
		return nil, fmt.Errorf("open storage in %s: %w", cfg.DataDir, err)
	}
	return e, nil
}

// initMembership sets the ring from the static peer list.
func (n *Node) initMembership() error {
	if n.cfg.Peers == "" {
		return errors.New("ZooKeeper membership is not available in this build: set Peers")
	}
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
	n.view.Store(&replication.View{Current: r, RF: n.cfg.ReplicationFactor})
	return nil
}

// Addr is the address the node listens on.
func (n *Node) Addr() string { return n.listener.Addr().String() }

// Registry is the node's metrics registry.
func (n *Node) Registry() *prometheus.Registry { return n.registry }

// Engine is the node's local storage (tests inspect placement with it).
func (n *Node) Engine() storage.Engine { return n.engine }

// Run serves until ctx is cancelled, then shuts down gracefully: it stops
// accepting requests, lets in-flight ones finish, waits for background
// replica calls, and closes the engine.
func (n *Node) Run(ctx context.Context) error {
	errc := make(chan error, 1)
	go func() { errc <- n.server.Serve(n.listener) }()
	n.log.Info().Str("addr", n.Addr()).Str("advertise", n.cfg.AdvertiseAddress()).Msg("node serving")
	var serveErr error
	select {
	case <-ctx.Done():
	case serveErr = <-errc:
	}
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := n.server.Shutdown(shutdownCtx); err != nil {
		n.log.Warn().Err(err).Msg("shutdown")
	}
	n.coord.Close()
	n.peers.Close()
	if err := n.engine.Close(); err != nil {
		serveErr = errors.Join(serveErr, err)
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

func (t timeoutCoordinator) Put(ctx context.Context, id string, data []byte, cl config.Consistency) (hlc.Version, error) {
	ctx, cancel := context.WithTimeout(ctx, t.timeout)
	defer cancel()
	return t.Coordinator.Put(ctx, id, data, cl)
}

func (t timeoutCoordinator) Get(ctx context.Context, id string, cl config.Consistency) (storage.Record, error) {
	ctx, cancel := context.WithTimeout(ctx, t.timeout)
	defer cancel()
	return t.Coordinator.Get(ctx, id, cl)
}

func (t timeoutCoordinator) Delete(ctx context.Context, id string, cl config.Consistency) (hlc.Version, error) {
	ctx, cancel := context.WithTimeout(ctx, t.timeout)
	defer cancel()
	return t.Coordinator.Delete(ctx, id, cl)
}
