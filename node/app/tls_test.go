package app

import (
	"net/http"
	"strings"
	"testing"

	"github.com/goblocks/goblocks/node/peertls"
	"github.com/goblocks/goblocks/node/peertls/peertlstest"
)

// With mutual TLS the cluster replicates over HTTPS, and a stolen cluster
// token alone no longer reaches /internal/*: the caller must also hold a
// certificate of the cluster's CA.
func TestMutualTLSGuardsInternalEndpoints(t *testing.T) {
	dir := t.TempDir()
	ca := peertlstest.NewCA(t, dir, "cluster")
	c := startCluster(t, 3, clusterOpts{tls: ca})
	blocks := acked{}
	c.writeAcked(t, []int{0, 1}, "tls", 10, blocks)
	if lost := c.verifyAcked(t, 2, blocks); lost != 0 {
		t.Fatalf("%d of %d blocks lost replicating over TLS", lost, len(blocks))
	}
	if got := gatheredValue(t, c.nodes[2].Registry(), "blocks_connections_open"); got < 1 {
		t.Fatalf("connections open %v: the limiter lost track of TLS connections", got)
	}

	// The test client trusts the CA but holds no certificate: the token
	// is not enough.
	forged := frames(t, "tls-0", randomBlock(t))
	status, body, _, err := c.do(http.MethodPost, c.url(1, "/internal/batch/apply"), forged, c.tokenHeader(1)...)
	if err != nil || status != http.StatusUnauthorized || !strings.Contains(string(body), "certificate") {
		t.Fatalf("batch with the token and no certificate: %d %s %v, want 401 naming the certificate", status, body, err)
	}

	// A certificate of another CA fails the handshake.
	intruder, err := peertls.Load(peertlstest.NewCA(t, dir, "other").Issue(t, "intruder"))
	if err != nil {
		t.Fatal(err)
	}
	cfg := intruder.Client.Clone()
	cfg.RootCAs = c.client.Transport.(*http.Transport).TLSClientConfig.RootCAs
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: cfg}}
	defer hc.CloseIdleConnections()
	req, _ := http.NewRequest(http.MethodGet, c.url(1, "/internal/block/tls-0"), nil)
	req.Header.Set(c.tokenHeader(1)[0], c.tokenHeader(1)[1])
	if resp, err := hc.Do(req); err == nil {
		resp.Body.Close()
		t.Fatalf("certificate of another CA: %s, want a failed handshake", resp.Status)
	}

	// Plain HTTP to a TLS node gets no block.
	plain := strings.Replace(c.url(1, "/block/tls-0"), "https://", "http://", 1)
	if status, _, _, err := c.do(http.MethodGet, plain, nil); err == nil && status != http.StatusBadRequest {
		t.Fatalf("plain HTTP to a TLS node: %d, want 400 or a refused request", status)
	}

	if lost := c.verifyAcked(t, 0, blocks); lost != 0 {
		t.Fatalf("%d blocks changed by refused requests", lost)
	}
}
