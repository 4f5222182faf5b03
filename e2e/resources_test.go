//go:build e2e

package e2e

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/moby/moby/client"
	"github.com/testcontainers/testcontainers-go"
)

// Labels put on everything the suite creates. The pid label lets a later
// run tell leftovers of a dead process (a panic in a workload goroutine, a
// -timeout abort, SIGKILL) from a suite that is running right now.
const (
	labelSuite = "goblocks.e2e"
	labelPID   = "goblocks.e2e.pid"
)

func suiteLabels() map[string]string {
	return map[string]string{labelSuite: "true", labelPID: strconv.Itoa(os.Getpid())}
}

// registry holds every container and network this process created that
// has not been removed yet. It is safe for concurrent use.
type registry struct {
	docker *testcontainers.DockerClient

	mu         sync.Mutex
	containers map[string]*testcontainers.DockerContainer // by ID
	networks   map[string]*testcontainers.DockerNetwork   // by ID
	// downs remove what the suite started outside testcontainers (the
	// compose lab), keyed by a name.
	downs map[string]func()
}

var resources = &registry{
	containers: map[string]*testcontainers.DockerContainer{},
	networks:   map[string]*testcontainers.DockerNetwork{},
	downs:      map[string]func(){},
}

// addDown registers a removal removeAll runs (on a signal, near -timeout,
// at the end); dropDown forgets it once done.
func (r *registry) addDown(name string, down func()) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.downs[name] = down
}

func (r *registry) dropDown(name string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.downs, name)
}

func (r *registry) addContainer(c *testcontainers.DockerContainer) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.containers[c.GetContainerID()] = c
}

func (r *registry) addNetwork(n *testcontainers.DockerNetwork) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.networks[n.ID] = n
}

// removeContainer kills and removes c (no graceful stop: the data goes
// with it) and forgets it.
func (r *registry) removeContainer(c *testcontainers.DockerContainer) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, err := r.docker.ContainerRemove(ctx, c.GetContainerID(), client.ContainerRemoveOptions{Force: true, RemoveVolumes: true})
	if err != nil && isNotFound(err) {
		err = nil
	}
	r.mu.Lock()
	delete(r.containers, c.GetContainerID())
	r.mu.Unlock()
	return err
}

func (r *registry) removeNetwork(n *testcontainers.DockerNetwork) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, err := r.docker.NetworkRemove(ctx, n.ID, client.NetworkRemoveOptions{})
	if err != nil && isNotFound(err) {
		err = nil
	}
	r.mu.Lock()
	delete(r.networks, n.ID)
	r.mu.Unlock()
	return err
}

// removeAll removes whatever is still registered: containers first, since
// a network with endpoints cannot be removed.
func (r *registry) removeAll() {
	r.mu.Lock()
	var cs []*testcontainers.DockerContainer
	for _, c := range r.containers {
		cs = append(cs, c)
	}
	var ns []*testcontainers.DockerNetwork
	for _, n := range r.networks {
		ns = append(ns, n)
	}
	var downs []func()
	for _, d := range r.downs {
		downs = append(downs, d)
	}
	r.mu.Unlock()
	for _, d := range downs {
		d()
	}
	for _, c := range cs {
		if err := r.removeContainer(c); err != nil {
			fmt.Fprintf(os.Stderr, "e2e: remove container %s: %v\n", c.GetContainerID()[:12], err)
		}
	}
	for _, n := range ns {
		if err := r.removeNetwork(n); err != nil {
			fmt.Fprintf(os.Stderr, "e2e: remove network %s: %v\n", n.Name, err)
		}
	}
}

func isNotFound(err error) bool {
	msg := strings.ToLower(err.Error())
	return strings.Contains(msg, "no such") || strings.Contains(msg, "not found")
}

// removeOrphans removes containers and networks of earlier runs whose
// process is gone (without Ryuk nothing else would).
func removeOrphans(ctx context.Context, docker *testcontainers.DockerClient) {
	dead := func(labels map[string]string) bool {
		pid, err := strconv.Atoi(labels[labelPID])
		if err != nil || pid <= 0 {
			return true
		}
		return errors.Is(syscall.Kill(pid, 0), syscall.ESRCH)
	}
	filter := client.Filters{}.Add("label", labelSuite+"=true")
	cs, err := docker.ContainerList(ctx, client.ContainerListOptions{All: true, Filters: filter})
	if err == nil {
		for _, c := range cs.Items {
			if dead(c.Labels) {
				fmt.Fprintf(os.Stderr, "e2e: removing container %s left by an earlier run\n", c.ID[:12])
				_, _ = docker.ContainerRemove(ctx, c.ID, client.ContainerRemoveOptions{Force: true, RemoveVolumes: true})
			}
		}
	}
	ns, err := docker.NetworkList(ctx, client.NetworkListOptions{Filters: filter})
	if err == nil {
		for _, n := range ns.Items {
			if dead(n.Labels) {
				fmt.Fprintf(os.Stderr, "e2e: removing network %s left by an earlier run\n", n.Name)
				_, _ = docker.NetworkRemove(ctx, n.ID, client.NetworkRemoveOptions{})
			}
		}
	}
}

// checkImages fails when an image is missing: the suite never pulls (the
// lab machines reach no registry).
func checkImages(ctx context.Context, docker *testcontainers.DockerClient, images ...string) error {
	var missing []string
	for _, img := range images {
		if _, err := docker.ImageInspect(ctx, img); err != nil {
			missing = append(missing, img)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("image(s) %v not found locally; the suite does not pull: run `make image images` first", missing)
	}
	return nil
}
