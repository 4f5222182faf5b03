//go:build e2e

// Package e2e runs goblocks as containers (ZooKeeper plus node images)
// with testcontainers-go and proves the cluster's guarantees across joins,
// leaves, crashes, partitions and restarts, each under a continuous
// workload that records every acknowledged write.
//
//	make image images
//	TESTCONTAINERS_RYUK_DISABLED=true go test -tags e2e -count=1 -timeout 25m -v ./e2e/
//
// The lab machines reach no registry, so Ryuk (the reaper image) cannot be
// pulled: the suite keeps every container and network it creates in a
// registry and removes them itself, after each test and again when the
// process ends, on a signal, or on the next run (leftovers of a process that
// died are found by label). Nothing here imports node/... internals: the
// suite talks to the nodes over HTTP only.
package e2e

import (
	"context"
	"flag"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/signal"
	"syscall"
	"testing"
	"time"

	"github.com/moby/moby/client"
	"github.com/testcontainers/testcontainers-go"
)

// Image names; the environment overrides them as the Makefile does.
var (
	nodeImage      = envOr("GOBLOCKS_IMAGE", "goblocks:latest")
	zookeeperImage = envOr("ZOOKEEPER_IMAGE", "zookeeper:3.8")
)

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

func TestMain(m *testing.M) {
	// Before testcontainers reads its configuration (it does so once): the
	// reaper image cannot be pulled here, and "true" is the only value it
	// accepts as disabled.
	if os.Getenv("TESTCONTAINERS_RYUK_DISABLED") == "" {
		os.Setenv("TESTCONTAINERS_RYUK_DISABLED", "true")
	}
	os.Exit(run(m))
}

func run(m *testing.M) int {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	docker, err := testcontainers.NewDockerClientWithOpts(ctx)
	if err != nil {
		fmt.Fprintf(os.Stderr, "e2e: no Docker daemon: %v\n", err)
		return 1
	}
	defer docker.Close()
	resources.docker = docker
	if err := checkImages(ctx, docker, nodeImage, zookeeperImage); err != nil {
		fmt.Fprintf(os.Stderr, "e2e: %v\n", err)
		return 1
	}
	removeOrphans(ctx, docker)
	if os.Getenv("TESTCONTAINERS_HOST_OVERRIDE") == "" && daemonIsLocal(ctx, docker) {
		// Inside a container (/.dockerenv) testcontainers guesses the
		// mapped ports' host from the default route, which on the lab
		// machines (dockerd runs in the same container) is the outer host:
		// every connection is refused. When one of our addresses is on the
		// daemon's default bridge, published ports are on localhost.
		os.Setenv("TESTCONTAINERS_HOST_OVERRIDE", "localhost")
	}

	// Ctrl-C or a CI runner's SIGTERM would otherwise leave containers
	// behind (no reaper).
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	go func() {
		s := <-sigs
		fmt.Fprintf(os.Stderr, "e2e: %v: removing containers and networks\n", s)
		resources.removeAll()
		os.Exit(2)
	}()

	// -timeout ends the process with a panic that runs no cleanup: remove
	// everything shortly before that happens (the next run would also find
	// the leftovers by label, but a CI machine may not run it soon).
	flag.Parse()
	if f := flag.Lookup("test.timeout"); f != nil {
		if d, err := time.ParseDuration(f.Value.String()); err == nil && d > time.Minute {
			watchdog := time.AfterFunc(d-20*time.Second, func() {
				fmt.Fprintf(os.Stderr, "e2e: -timeout %v is near: removing containers and networks\n", d)
				resources.removeAll()
			})
			defer watchdog.Stop()
		}
	}

	code := m.Run()
	signal.Stop(sigs)
	resources.removeAll()
	return code
}

// daemonIsLocal reports whether the Docker daemon runs in this network
// namespace: one of our addresses is on its default bridge (docker0 holds
// the bridge's gateway address; Docker 20.10 does not report the gateway of
// the default bridge, so the subnet is what we compare).
func daemonIsLocal(ctx context.Context, docker *testcontainers.DockerClient) bool {
	res, err := docker.NetworkInspect(ctx, "bridge", client.NetworkInspectOptions{})
	if err != nil {
		return false
	}
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return false
	}
	for _, cfg := range res.Network.IPAM.Config {
		for _, a := range addrs {
			ipn, ok := a.(*net.IPNet)
			if !ok {
				continue
			}
			ip, ok := netip.AddrFromSlice(ipn.IP)
			if !ok {
				continue
			}
			ip = ip.Unmap()
			if (cfg.Gateway.IsValid() && cfg.Gateway == ip) || (cfg.Subnet.IsValid() && cfg.Subnet.Contains(ip)) {
				return true
			}
		}
	}
	return false
}
