package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"time"
)

// ErrUnknown is returned for a name no replica reports.
var ErrUnknown = errors.New("no replica reports this name")

// Directory finds which replica answers to which name: it resolves Service
// to every replica's address and asks each for its name on /health.
type Directory struct {
	Service    string // DNS name of all replicas (Docker's service alias)
	HealthPort int    // where each replica serves GET /health
	// LookupHost resolves Service; nil means net.DefaultResolver.
	LookupHost func(ctx context.Context, host string) ([]string, error)
	Client     *http.Client // nil means a client with a 2 s timeout
	// MinRefresh spaces refreshes that a missing name triggers, so a
	// client retrying a stopped node does not probe every replica each
	// time (default 1 s).
	MinRefresh time.Duration

	mu        sync.Mutex // serializes refreshes
	addrs     map[string]string
	refreshed time.Time
}

// Resolve returns the host of the replica called name. fresh forces a
// refresh (the cached address did not answer).
func (d *Directory) Resolve(ctx context.Context, name string, fresh bool) (string, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if host, ok := d.addrs[name]; ok && !fresh {
		return host, nil
	}
	minRefresh := d.MinRefresh
	if minRefresh == 0 {
		minRefresh = time.Second
	}
	if !fresh && time.Since(d.refreshed) < minRefresh {
		return "", fmt.Errorf("%s: %w", name, ErrUnknown)
	}
	if err := d.refreshLocked(ctx); err != nil {
		return "", err
	}
	if host, ok := d.addrs[name]; ok {
		return host, nil
	}
	return "", fmt.Errorf("%s: %w", name, ErrUnknown)
}

// Names lists the names of the last refresh, sorted.
func (d *Directory) Names() []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	names := make([]string, 0, len(d.addrs))
	for n := range d.addrs {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

func (d *Directory) refreshLocked(ctx context.Context) error {
	lookup := d.LookupHost
	if lookup == nil {
		lookup = net.DefaultResolver.LookupHost
	}
	hosts, err := lookup(ctx, d.Service)
	d.refreshed = time.Now()
	if err != nil {
		// Docker's DNS has no record for a service with no running
		// replica: then no name is known.
		var dnsErr *net.DNSError
		if errors.As(err, &dnsErr) && dnsErr.IsNotFound {
			d.addrs = nil
			return nil
		}
		return fmt.Errorf("resolve %s: %w", d.Service, err)
	}
	names := make([]string, len(hosts))
	var wg sync.WaitGroup
	for i, h := range hosts {
		wg.Add(1)
		go func() { defer wg.Done(); names[i] = d.nameOf(ctx, h) }()
	}
	wg.Wait()
	addrs := map[string]string{}
	for i, n := range names {
		if n != "" {
			addrs[n] = hosts[i]
		}
	}
	d.addrs = addrs
	return nil
}

// nameOf asks the replica at host for its name; "" when it does not say
// (not started yet, or not a node).
func (d *Directory) nameOf(ctx context.Context, host string) string {
	client := d.Client
	if client == nil {
		client = &http.Client{Timeout: 2 * time.Second}
	}
	url := "http://" + net.JoinHostPort(host, strconv.Itoa(d.HealthPort)) + "/health"
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return ""
	}
	resp, err := client.Do(req)
	if err != nil {
		return ""
	}
	defer resp.Body.Close()
	// A degraded node answers 503 with its name too: it is still the
	// replica an operator asks for by name.
	var body struct {
		Node string `json:"node"`
	}
	if json.NewDecoder(io.LimitReader(resp.Body, 64<<10)).Decode(&body) != nil {
		return ""
	}
	return body.Node
}

// Refresh asks every replica for its name now.
func (d *Directory) Refresh(ctx context.Context) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.refreshLocked(ctx)
}
