package app

import (
	"bytes"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/goblocks/goblocks/node/hlc"
	"github.com/goblocks/goblocks/node/storage"
	"github.com/goblocks/goblocks/node/wire"
)

// The trust issue's forged versions: a record versioned at the largest
// timestamp, or a year ahead, sent straight to every replica (here with the
// cluster token: a peer whose clock runs ahead has it too) once replaced a
// block for good: later PUTs were acknowledged and silently discarded, and
// a forged tombstone made the block 404 forever. Every path now refuses a
// version more than MaxClockOffset ahead of the receiver's clock: nothing
// changes, the refusal is counted and /health names the peer.
func TestForgedFutureVersionsRefused(t *testing.T) {
	c := startCluster(t, 3, clusterOpts{token: "s3cret-cluster-token"})
	orig := randomBlock(t)
	version, err := c.put(0, "keep", orig)
	if err != nil {
		t.Fatal(err)
	}
	c.waitVersion(t, "keep", version)
	auth := []string{"Authorization", "Bearer s3cret-cluster-token"}
	forged := randomBlock(t)
	for _, v := range []hlc.Version{
		{Timestamp: ^hlc.Timestamp(0), Node: "~x"},
		{Timestamp: hlc.At(time.Now().Add(365 * 24 * time.Hour)), Node: "n0"},
		{Timestamp: hlc.At(time.Now().Add(5 * time.Second)), Node: "n0"},
	} {
		for i := range c.nodes {
			var buf bytes.Buffer
			enc := wire.NewEncoder(&buf)
			_ = enc.Encode("keep", storage.NewRecord(forged, v))
			_ = enc.Encode("keep", storage.NewTombstone(v))
			_ = enc.Flush()
			h := http.Header{}
			wire.SetRecordHeaders(h, storage.NewTombstone(v).Meta())
			for _, req := range []struct {
				method, path string
				body         []byte
				hdr          []string
			}{
				{"POST", "/internal/batch/apply", buf.Bytes(), auth},
				{"DELETE", "/internal/block/keep", nil, append([]string{wire.HeaderVersion, h.Get(wire.HeaderVersion), wire.HeaderChecksum, h.Get(wire.HeaderChecksum)}, auth...)},
			} {
				status, body, _, err := c.do(req.method, c.url(i, req.path), req.body, req.hdr...)
				if err != nil {
					t.Fatal(err)
				}
				var e struct{ Code string }
				_ = json.Unmarshal(body, &e)
				if status != http.StatusBadRequest || e.Code != "future_version" {
					t.Fatalf("n%d %s %s at %s: %d %s, want 400 future_version", i, req.method, req.path, v, status, body)
				}
			}
		}
	}
	for i, v := range c.localVersions("keep") {
		if v != version {
			t.Fatalf("n%d holds %q, want %s", i, v, version)
		}
	}
	// The block stays writable: the next PUT wins and is read back.
	next := randomBlock(t)
	if _, err := c.put(2, "keep", next); err != nil {
		t.Fatal(err)
	}
	if got, _, err := c.get(1, "keep"); err != nil || !bytes.Equal(got, next) {
		t.Fatalf("read after the refused forgeries: %v", err)
	}
	for i, n := range c.nodes {
		if got := gatheredValue(t, n.Registry(), "blocks_future_versions_refused_total"); got != 6 {
			t.Errorf("n%d counted %v refusals, want 6", i, got)
		}
		_, body, _, _ := c.do("GET", c.url(i, "/health"), nil)
		if !strings.Contains(string(body), "peers_ahead") || !strings.Contains(string(body), "127.0.0.1") {
			t.Errorf("n%d health does not report the peer ahead: %s", i, body)
		}
	}
}
