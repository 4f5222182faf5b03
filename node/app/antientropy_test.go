package app

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/goblocks/goblocks/internal/testkit"
	"github.com/goblocks/goblocks/node/antientropy"
	"github.com/goblocks/goblocks/node/hlc"
	"github.com/goblocks/goblocks/node/ring"
	"github.com/goblocks/goblocks/node/storage"
	"github.com/goblocks/goblocks/node/wire"
)

// A replica that missed writes and deletes while down, with no hints to
// deliver them and no reads to repair them, converges by anti-entropy.
func TestAntiEntropyCatchesUpAReturningReplica(t *testing.T) {
	c := startCluster(t, 3, clusterOpts{noHints: true, antiEntropy: 100 * time.Millisecond})
	var deleted []string
	for i := range 5 {
		id := fmt.Sprintf("old-%d", i)
		v, err := c.put(0, id, randomBlock(t))
		if err != nil {
			t.Fatal(err)
		}
		c.waitVersion(t, id, v)
		deleted = append(deleted, id)
	}
	c.stop(2)
	written := map[string][]byte{}
	for i := range 50 {
		id := fmt.Sprintf("ae-%02d", i)
		data := randomBlock(t)
		if _, err := c.put(i%2, id, data); err != nil {
			t.Fatalf("put %s with one replica down: %v", id, err)
		}
		written[id] = data
	}
	tombstones := map[string]string{}
	for i, id := range deleted {
		status, body, hdr, err := c.do(http.MethodDelete, c.url(i%2, "/block/"+id), nil)
		if err != nil || status != http.StatusNoContent {
			t.Fatalf("delete %s: %d %s %v", id, status, body, err)
		}
		tombstones[id] = hdr.Get("X-Goblocks-Version")
	}
	c.restart(t, 2)
	testkit.Eventually(t, 20*time.Second, func() error {
		missing := 0
		for id, data := range written {
			rec, err := c.nodes[2].Engine().Get(id)
			if err != nil || !bytes.Equal(rec.Data, data) {
				missing++
			}
		}
		for id, v := range tombstones {
			m, err := c.nodes[2].Engine().GetMeta(id)
			if err != nil || !m.Tombstone || (v != "" && m.Version.String() != v) {
				missing++
			}
		}
		if missing > 0 {
			return fmt.Errorf("n2 still lacks %d of 50 blocks and 5 tombstones", missing)
		}
		// A round counts its repairs once the peer has answered, just
		// after the records are visible there.
		repaired := 0.0
		for _, n := range c.nodes {
			repaired += gatheredValue(t, n.Registry(), "blocks_antientropy_blocks_repaired_total")
		}
		if repaired < 55 {
			return fmt.Errorf("blocks_antientropy_blocks_repaired_total sums to %v, want >= 55", repaired)
		}
		return nil
	})
}

// A replica holding an older version (restored from an old backup) and
// a write only one replica received are both brought up to date.
func TestAntiEntropyRepairsADivergedReplica(t *testing.T) {
	c := startCluster(t, 3, clusterOpts{noHints: true, antiEntropy: 100 * time.Millisecond})
	cur := randomBlock(t)
	vs, err := c.put(0, "restored", cur)
	if err != nil {
		t.Fatal(err)
	}
	c.waitVersion(t, "restored", vs)
	v, err := hlc.ParseVersion(vs)
	if err != nil {
		t.Fatal(err)
	}
	// n1 goes back to an older version, as a restore from backup would.
	e1 := c.nodes[1].Engine()
	if ok, err := e1.Remove("restored", v); !ok || err != nil {
		t.Fatalf("remove: %v %v", ok, err)
	}
	older := hlc.Version{Timestamp: v.Timestamp - 1000, Node: "n0"}
	if _, err := e1.Apply("restored", storage.NewRecord(randomBlock(t), older)); err != nil {
		t.Fatal(err)
	}
	// n0 alone holds a newer write of another block.
	only := randomBlock(t)
	newer := hlc.Version{Timestamp: v.Timestamp + 1000, Node: "n0"}
	if ok, err := c.nodes[0].Engine().Apply("only-n0", storage.NewRecord(only, newer)); !ok || err != nil {
		t.Fatalf("apply: %v %v", ok, err)
	}
	testkit.Eventually(t, 10*time.Second, func() error {
		for n, node := range c.nodes {
			rec, err := node.Engine().Get("restored")
			if err != nil || rec.Version != v || !bytes.Equal(rec.Data, cur) {
				return fmt.Errorf("n%d holds restored at %v (%v)", n, rec.Version, err)
			}
			rec, err = node.Engine().Get("only-n0")
			if err != nil || rec.Version != newer || !bytes.Equal(rec.Data, only) {
				return fmt.Errorf("n%d holds only-n0 at %v (%v)", n, rec.Version, err)
			}
		}
		return nil
	})
	// Once converged, rounds find every pair in sync.
	testkit.Eventually(t, 10*time.Second, func() error {
		before := gatheredValue(t, c.nodes[0].Registry(), "blocks_antientropy_rounds_total", "result", "in_sync")
		if before < 2 {
			return fmt.Errorf("n0 had %v in-sync rounds", before)
		}
		return nil
	})
}

// Bad anti-entropy requests get a 4xx JSON error and change nothing.
func TestAntiEntropyEndpointsRejectBadInput(t *testing.T) {
	c := startCluster(t, 3, clusterOpts{token: "s3cret-cluster-token", storage: "memory"})
	version, err := c.put(0, "keep", randomBlock(t))
	if err != nil {
		t.Fatal(err)
	}
	c.waitVersion(t, "keep", version)
	members := make([]ring.Member, 3)
	for i := range members {
		members[i] = ring.Member{Name: fmt.Sprintf("n%d", i), VNodes: c.cfgs[i].VNodes}
	}
	r, err := ring.New(members)
	if err != nil {
		t.Fatal(err)
	}
	ringID := antientropy.RingID(r, 3)
	auth := []string{"Authorization", "Bearer s3cret-cluster-token"}
	ids := func(v any) []byte {
		b, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	digest := wire.PathAntiEntropyDigest + "?peer=n1&ring=" + ringID
	tests := []struct {
		name, method, path string
		body               []byte
		hdr                []string
		status             int
		code               string
	}{
		{"digest ok", "GET", digest, nil, auth, 200, ""},
		{"digest without token", "GET", digest, nil, nil, 401, "unauthorized"},
		{"digest by post", "POST", digest, nil, auth, 405, "method_not_allowed"},
		{"digest no peer", "GET", wire.PathAntiEntropyDigest + "?ring=" + ringID, nil, auth, 400, "malformed"},
		{"digest no ring", "GET", wire.PathAntiEntropyDigest + "?peer=n1", nil, auth, 400, "malformed"},
		{"digest unknown peer", "GET", wire.PathAntiEntropyDigest + "?peer=zz&ring=" + ringID, nil, auth, 400, "unknown_peer"},
		{"digest self", "GET", wire.PathAntiEntropyDigest + "?peer=n0&ring=" + ringID, nil, auth, 400, "unknown_peer"},
		{"digest other ring", "GET", wire.PathAntiEntropyDigest + "?peer=n1&ring=abc", nil, auth, 409, "ring_mismatch"},
		{"ids ok", "POST", wire.PathAntiEntropyIDs, ids(wire.AntiEntropyIDsRequest{Peer: "n1", Ring: ringID, Buckets: []int{1, 2}}), auth, 200, ""},
		{"ids without token", "POST", wire.PathAntiEntropyIDs, ids(wire.AntiEntropyIDsRequest{Peer: "n1", Ring: ringID, Buckets: []int{1}}), nil, 401, "unauthorized"},
		{"ids by get", "GET", wire.PathAntiEntropyIDs, nil, auth, 405, "method_not_allowed"},
		{"ids not json", "POST", wire.PathAntiEntropyIDs, []byte("buckets=1"), auth, 400, "malformed"},
		{"ids unknown field", "POST", wire.PathAntiEntropyIDs, []byte(`{"peer":"n1","ring":"` + ringID + `","buckets":[1],"x":1}`), auth, 400, "malformed"},
		{"ids no buckets", "POST", wire.PathAntiEntropyIDs, ids(wire.AntiEntropyIDsRequest{Peer: "n1", Ring: ringID}), auth, 400, "invalid_buckets"},
		{"ids bucket out of range", "POST", wire.PathAntiEntropyIDs, ids(wire.AntiEntropyIDsRequest{Peer: "n1", Ring: ringID, Buckets: []int{antientropy.Buckets}}), auth, 400, "invalid_buckets"},
		{"ids too many buckets", "POST", wire.PathAntiEntropyIDs, ids(wire.AntiEntropyIDsRequest{Peer: "n1", Ring: ringID, Buckets: make([]int, antientropy.MaxBucketsPerRequest+1)}), auth, 400, "invalid_buckets"},
		{"ids no peer", "POST", wire.PathAntiEntropyIDs, ids(wire.AntiEntropyIDsRequest{Ring: ringID, Buckets: []int{1}}), auth, 400, "malformed"},
		{"ids other ring", "POST", wire.PathAntiEntropyIDs, ids(wire.AntiEntropyIDsRequest{Peer: "n1", Ring: "abc", Buckets: []int{1}}), auth, 409, "ring_mismatch"},
		{"ids huge body", "POST", wire.PathAntiEntropyIDs, bytes.Repeat([]byte(" "), wire.MaxAntiEntropyIDsRequest+1), auth, 413, "too_large"},
	}
	before := c.nodes[0].Engine().Count()
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			status, body, hdr, err := c.do(tc.method, c.url(0, tc.path), tc.body, tc.hdr...)
			if err != nil {
				t.Fatal(err)
			}
			if status != tc.status {
				t.Fatalf("status %d %s, want %d", status, body, tc.status)
			}
			if tc.code == "" {
				return
			}
			var e struct{ Error, Code string }
			if err := json.Unmarshal(body, &e); err != nil || e.Code != tc.code || hdr.Get("Content-Type") != "application/json" {
				t.Fatalf("body %s (%v), want code %q", body, err, tc.code)
			}
		})
	}
	if after := c.nodes[0].Engine().Count(); after != before {
		t.Fatalf("stored count went from %d to %d", before, after)
	}
}
