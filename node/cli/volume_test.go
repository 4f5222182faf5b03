package cli

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/goblocks/goblocks/client"
	"github.com/goblocks/goblocks/internal/testkit"
	"github.com/goblocks/goblocks/node/config"
	"github.com/goblocks/goblocks/node/membership/zk/zktest"
	"github.com/goblocks/goblocks/node/volume"
)

// startZKCluster is startCluster with ZooKeeper membership (the volume
// catalog lives there), waiting until every node serves.
func startZKCluster(t *testing.T, n int) *testCluster {
	t.Helper()
	zk := zktest.Start(t)
	c := startClusterWith(t, n, func(cfg *config.Config) {
		cfg.Peers = ""
		cfg.ZKAddress = zk.Addr
		cfg.ZKRoot = "/goblocks-cli-" + strings.ToLower(t.Name())
		cfg.ZKSessionTimeout = 2 * time.Second
	})
	cl, err := client.New(c.addrs)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	testkit.Eventually(t, time.Minute, func() error {
		for _, a := range c.addrs {
			st, err := cl.ClusterStatus(context.Background(), a)
			if err != nil {
				return err
			}
			if len(st.RingMembers) != n || st.Migrating {
				return fmt.Errorf("%s: ring %v, migrating %v", a, st.RingMembers, st.Migrating)
			}
		}
		return nil
	})
	return c
}

func TestVolumeCommands(t *testing.T) {
	c := startZKCluster(t, 3)
	nodes := c.nodes()

	expect(t, run(t, nodes, nil, "volume", "create", "-size", "1MiB", "disk1"), ExitOK, "created volume disk1: 1.0 MiB (1048576 bytes, 256 blocks)", "")
	expect(t, run(t, nodes, nil, "volume", "create", "disk2", "-size", "65536"), ExitOK, "16 blocks", "")
	expect(t, run(t, nodes, nil, "volume", "create", "-size", "2MiB", "disk1"), ExitExists, "", `volume "disk1" already exists`)
	expect(t, run(t, nodes, nil, "volume", "create", "-size", "1000", "odd"), ExitUsage, "", "multiple of 4096")
	expect(t, run(t, nodes, nil, "volume", "create", "-size", "lots", "x"), ExitUsage, "", "size")
	expect(t, run(t, nodes, nil, "volume", "create", "no-size"), ExitUsage, "", "-size is required")
	expect(t, run(t, nodes, nil, "volume", "create", "-size", "1MiB", "bad/name"), ExitUsage, "", "name")
	expect(t, run(t, nodes, nil, "volume", "frobnicate"), ExitUsage, "", "unknown subcommand")
	expect(t, run(t, nodes, nil, "volume", "-h"), ExitOK, "goblocks volume create -size SIZE NAME", "")
	expect(t, run(t, nodes, nil, "volume", "rm", "-h"), ExitOK, "Removes volume NAME", "")

	// Write blocks 0-9 and 100 of disk1 as a client would through NBD
	// (same ids), then ls counts them.
	cl, err := client.New(c.addrs)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx := context.Background()
	for _, i := range []int64{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 100} {
		if _, err := cl.Put(ctx, volume.BlockID("disk1", i), randomBytes(t, 4096)); err != nil {
			t.Fatal(err)
		}
	}
	r := run(t, nodes, nil, "volume", "ls")
	expect(t, r, ExitOK, "disk1", "")
	if !strings.Contains(r.stdout, "11 of 256") || !strings.Contains(r.stdout, "0 of 16") {
		t.Fatalf("volume ls: want disk1 with 11 of 256 blocks written and disk2 with 0 of 16:\n%s", r.stdout)
	}

	r = run(t, nodes, nil, "volume", "rm", "disk1", "-progress")
	expect(t, r, ExitOK, "removed volume disk1 (11 blocks deleted)", "removing disk1: 11/11 blocks deleted")
	for _, i := range []int64{0, 9, 100} {
		if _, err := cl.Get(ctx, volume.BlockID("disk1", i)); err == nil {
			t.Errorf("block %d of the removed volume still reads", i)
		}
	}
	expect(t, run(t, nodes, nil, "volume", "rm", "disk1"), ExitNotFound, "", `no volume "disk1"`)
	r = run(t, nodes, nil, "volume", "ls")
	if strings.Contains(r.stdout, "disk1") || !strings.Contains(r.stdout, "disk2") {
		t.Fatalf("volume ls after rm:\n%s", r.stdout)
	}
	// A new volume of the old name starts empty.
	expect(t, run(t, nodes, nil, "volume", "create", "-size", "1MiB", "disk1"), ExitOK, "", "")
	r = run(t, nodes, nil, "volume", "ls")
	if !strings.Contains(r.stdout, "0 of 256") {
		t.Fatalf("recreated disk1 is not empty:\n%s", r.stdout)
	}
}

// On a cluster without ZooKeeper the volume commands say why they cannot
// work.
func TestVolumeNeedsZooKeeper(t *testing.T) {
	c := startCluster(t, 1)
	expect(t, run(t, c.nodes(), nil, "volume", "ls"), ExitFailure, "", "volumes need ZooKeeper")
}
