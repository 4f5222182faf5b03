package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/rs/zerolog"

	"github.com/goblocks/goblocks/node/gateway"
)

// runGateway publishes the lab's nodes on ports that match their names
// (package gateway). Flags default to the environment variables of the
// same name, then to the lab's layout.
func runGateway(args []string, getenv func(string) string, stderr io.Writer) int {
	fs := flag.NewFlagSet("goblocks gateway", flag.ContinueOnError)
	fs.SetOutput(stderr)
	env := func(name, def string) string {
		if v := getenv(name); v != "" {
			return v
		}
		return def
	}
	routes := fs.String("routes", env("GatewayRoutes", "3001-3009:3000/http"),
		"comma-separated FIRST-LAST:TARGET[/http]: port FIRST+i-1 reaches port TARGET of the replica named PREFIX+i ($GatewayRoutes)")
	service := fs.String("service", env("GatewayService", "node"), "DNS name resolving to every replica ($GatewayService)")
	prefix := fs.String("prefix", env("GatewayPrefix", "node-"), "replica name prefix ($GatewayPrefix)")
	healthPort := fs.Int("health-port", 3000, "port of each replica's GET /health, which names it")
	status := fs.String("status", env("GatewayStatus", ":3000"), "address of the gateway's own GET /health ($GatewayStatus)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	var rs []gateway.Route
	for _, s := range strings.Split(*routes, ",") {
		r, err := gateway.ParseRoute(strings.TrimSpace(s))
		if err != nil {
			fmt.Fprintf(stderr, "goblocks gateway: %v\n", err)
			return 2
		}
		rs = append(rs, r)
	}
	log := zerolog.New(stderr).With().Timestamp().Str("component", "gateway").Logger()
	g := &gateway.Gateway{Routes: rs, Prefix: *prefix, Log: log,
		Dir: &gateway.Directory{Service: *service, HealthPort: *healthPort}}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	ln, err := net.Listen("tcp", *status)
	if err != nil {
		log.Error().Err(err).Msg("start failed")
		return 1
	}
	srv := &http.Server{Handler: g.StatusHandler(), ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	defer srv.Close()
	log.Info().Str("routes", *routes).Str("service", *service).Msg("gateway listening")
	if err := g.Serve(ctx); err != nil {
		log.Error().Err(err).Msg("gateway failed")
		return 1
	}
	return 0
}
