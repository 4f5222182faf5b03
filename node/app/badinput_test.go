package app

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/goblocks/goblocks/node/storage"
	"github.com/goblocks/goblocks/node/wire"
)

// Every bad request gets a 4xx JSON error with a stable code and leaves
// every node's storage exactly as it was.
func TestBadInputRejectedAndChangesNothing(t *testing.T) {
	c := startCluster(t, 3, clusterOpts{token: "s3cret-cluster-token"})
	orig := randomBlock(t)
	version, err := c.put(0, "keep", orig)
	if err != nil {
		t.Fatal(err)
	}
	c.waitVersion(t, "keep", version)
	good := randomBlock(t)
	auth := []string{"Authorization", "Bearer s3cret-cluster-token"}
	validHdr := func(data []byte) []string {
		h := http.Header{}
		wire.SetRecordHeaders(h, storage.NewRecord(data, mustVersion(t, "99999999999999-x")).Meta())
		return append([]string{wire.HeaderVersion, h.Get(wire.HeaderVersion), wire.HeaderChecksum, h.Get(wire.HeaderChecksum)}, auth...)
	}
	tests := []struct {
		name   string
		method string
		path   string
		body   []byte
		hdr    []string
		status int
		code   string
	}{
		{"id with bad character", "PUT", "/block/a$b", good, nil, 400, "invalid_id"},
		{"id with encoded slash", "PUT", "/block/a%2Fb", good, nil, 400, "invalid_id"},
		{"id dot", "PUT", "/block/.", good, nil, 400, "invalid_id"},
		{"id dotdot", "GET", "/block/..", nil, nil, 400, "invalid_id"},
		{"id too long", "PUT", "/block/" + strings.Repeat("a", 256), good, nil, 400, "invalid_id"},
		{"id with space", "DELETE", "/block/a%20b", nil, nil, 400, "invalid_id"},
		{"empty body", "PUT", "/block/keep", []byte{}, nil, 400, "bad_size"},
		{"short body", "PUT", "/block/keep", good[:4095], nil, 400, "bad_size"},
		{"long body", "PUT", "/block/keep", append(good, 1), nil, 413, "too_large"},
		{"huge body", "PUT", "/block/keep", bytes.Repeat([]byte{1}, 1<<20), nil, 413, "too_large"},
		{"bad consistency put", "PUT", "/block/keep?consistency=most", good, nil, 400, "invalid_consistency"},
		{"bad consistency get", "GET", "/block/keep?consistency=2", nil, nil, 400, "invalid_consistency"},
		{"bad consistency delete", "DELETE", "/block/keep?consistency=", nil, nil, 0, ""}, // empty = default: allowed, on another id below
		{"post not allowed", "POST", "/block/keep", good, nil, 405, "method_not_allowed"},
		{"patch not allowed", "PATCH", "/block/keep", good, nil, 405, "method_not_allowed"},
		{"post health", "POST", "/health", nil, nil, 405, "method_not_allowed"},
		{"unknown path", "GET", "/blocks", nil, nil, 404, "no_route"},
		{"no id", "GET", "/block/", nil, nil, 404, "no_route"},
		{"internal put without token", "PUT", "/internal/block/keep", good, validHdr(good)[:4], 401, "unauthorized"},
		{"internal put wrong token", "PUT", "/internal/block/keep", good, append(validHdr(good)[:4], "Authorization", "Bearer nope"), 401, "unauthorized"},
		{"internal delete without token", "DELETE", "/internal/block/keep", nil, validHdr(nil)[:4], 401, "unauthorized"},
		{"internal get without token", "GET", "/internal/block/keep", nil, nil, 401, "unauthorized"},
		{"internal put no version", "PUT", "/internal/block/keep", good, auth, 400, "malformed"},
		{"internal put bad checksum", "PUT", "/internal/block/keep", good, append([]string{wire.HeaderVersion, "99999999999999-x", wire.HeaderChecksum, "1"}, auth...), 400, "checksum_mismatch"},
		{"internal put short", "PUT", "/internal/block/keep", good[:10], validHdr(good[:10]), 400, "bad_size"},
		{"internal put bad id", "PUT", "/internal/block/a*b", good, validHdr(good), 400, "invalid_id"},
		{"internal put tombstone state", "PUT", "/internal/block/keep", good, append(validHdr(good), wire.HeaderState, "tombstone"), 400, "malformed"},
		{"internal delete with body", "DELETE", "/internal/block/keep", good, validHdr(nil), 400, "malformed"},
		{"internal post", "POST", "/internal/block/keep", good, auth, 405, "method_not_allowed"},
		{"batch apply garbage", "POST", "/internal/batch/apply", []byte("not frames"), auth, 400, "malformed"},
		{"batch apply corrupt frame", "POST", "/internal/batch/apply", corruptFrame(t, good), auth, 400, "checksum_mismatch"},
		{"batch apply short block", "POST", "/internal/batch/apply", frames(t, "keep", good[:100]), auth, 400, "bad_size"},
		{"batch apply bad id", "POST", "/internal/batch/apply", frames(t, "a*b", good), auth, 400, "invalid_id"},
		{"batch apply without token", "POST", "/internal/batch/apply", frames(t, "keep", good), nil, 401, "unauthorized"},
		{"batch apply get", "GET", "/internal/batch/apply", nil, auth, 405, "method_not_allowed"},
		{"batch fetch bad id", "POST", "/internal/batch/fetch", []byte("ok\nb/d"), auth, 400, "invalid_id"},
		{"batch fetch too many", "POST", "/internal/batch/fetch", []byte(strings.Repeat("x\n", 300)), auth, 400, "malformed"},
		{"batch meta bad id", "POST", "/internal/batch/meta", []byte("ok\nb/d"), auth, 400, "invalid_id"},
		{"batch meta too many", "POST", "/internal/batch/meta", []byte(strings.Repeat("x\n", 300)), auth, 400, "malformed"},
		{"batch meta without token", "POST", "/internal/batch/meta", []byte("keep"), nil, 401, "unauthorized"},
		{"batch meta get", "GET", "/internal/batch/meta", nil, auth, 405, "method_not_allowed"},
		{"batch digest bad id", "POST", "/internal/batch/digest", []byte("ok\nb/d"), auth, 400, "invalid_id"},
		{"batch digest too many", "POST", "/internal/batch/digest", []byte(strings.Repeat("x\n", 300)), auth, 400, "malformed"},
		{"batch digest without token", "POST", "/internal/batch/digest", []byte("keep"), nil, 401, "unauthorized"},
		{"internal unknown", "GET", "/internal/nothing", nil, auth, 404, "no_route"},
	}
	for _, tc := range tests {
		if tc.status == 0 {
			continue
		}
		t.Run(tc.name, func(t *testing.T) {
			status, body, hdr, err := c.do(tc.method, c.url(1, tc.path), tc.body, tc.hdr...)
			if err != nil {
				t.Fatal(err)
			}
			if status != tc.status {
				t.Fatalf("status %d, want %d (body %s)", status, tc.status, body)
			}
			if ct := hdr.Get("Content-Type"); ct != "application/json" {
				t.Fatalf("Content-Type %q, want application/json", ct)
			}
			var e struct{ Error, Code string }
			if err := json.Unmarshal(body, &e); err != nil || e.Error == "" || e.Code != tc.code {
				t.Fatalf("body %s: want {error, code=%q} (%v)", body, tc.code, err)
			}
		})
	}
	for i, v := range c.localVersions("keep") {
		if v != version {
			t.Fatalf("n%d now holds %q, bad input changed it (was %s)", i, v, version)
		}
	}
	for i, n := range c.nodes {
		if got := n.Engine().Count(); got != 1 {
			t.Fatalf("n%d stores %d blocks, want 1", i, got)
		}
	}
	if got, _, err := c.get(2, "keep"); err != nil || !bytes.Equal(got, orig) {
		t.Fatalf("block changed by bad input: %v", err)
	}
}

// An endless body is cut off after size+1 bytes: the node answers 413
// without waiting for (or buffering) the rest.
func TestEndlessBodyIsCutOff(t *testing.T) {
	c := startCluster(t, 1, clusterOpts{rf: 1, storage: "memory"})
	conn, err := net.Dial("tcp", c.cfgs[0].ReplicaAddress)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if err := conn.SetDeadline(time.Now().Add(10 * time.Second)); err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(conn, "PUT /block/endless HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
	// Send 8 KiB in chunks, never the terminating chunk.
	for i := 0; i < 8; i++ {
		fmt.Fprintf(conn, "400\r\n%s\r\n", strings.Repeat("z", 1024))
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if resp.StatusCode != http.StatusRequestEntityTooLarge {
		t.Fatalf("status %d (%s), want 413", resp.StatusCode, body)
	}
	if n := c.nodes[0].Engine().Count(); n != 0 {
		t.Fatalf("stored %d blocks", n)
	}
}

// frames encodes one record at a new version as a batch-apply body.
func frames(t *testing.T, id string, data []byte) []byte {
	var buf bytes.Buffer
	enc := wire.NewEncoder(&buf)
	if err := enc.Encode(id, storage.NewRecord(data, mustVersion(t, "99999999999999-x"))); err != nil {
		t.Fatal(err)
	}
	if err := enc.Flush(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func corruptFrame(t *testing.T, data []byte) []byte {
	b := frames(t, "keep", data)
	b[len(b)-1] ^= 1
	return b
}
