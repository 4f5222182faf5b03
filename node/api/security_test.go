package api

import (
	"bytes"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"
	"time"

	"github.com/gorilla/mux"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/goblocks/goblocks/node/auth"
	"github.com/goblocks/goblocks/node/storage/diskguard"
	"github.com/goblocks/goblocks/node/storage/memory"
	"github.com/goblocks/goblocks/node/wire"
)

// /admin/* and /metrics answer only with the admin token when one is set;
// the client API and /health stay open.
func TestAdminToken(t *testing.T) {
	admin := auth.NewToken("admin-0123456789abcdef")
	h := NewHandler(Options{Self: "n1", BlockSize: 4096, Coordinator: fakeCoordinator{}, Local: memory.New(), AdminToken: admin,
		Extra: func(r *mux.Router) {
			r.Handle("/admin/cluster", Methods{http.MethodGet: func(w http.ResponseWriter, _ *http.Request) { writeJSON(w, 200, "status") }})
		}})
	for _, tc := range []struct {
		path, token string
		want        int
	}{
		{"/admin/cluster", "", 401},
		{"/admin/cluster", "wrong-0123456789abcdef", 401},
		{"/admin/cluster", admin.Value(), 200},
		{"/metrics", "", 401},
		{"/metrics", admin.Value(), 200},
		{"/health", "", 200},
		{"/block/a", "", 200}, // the client API stays open
	} {
		req := httptest.NewRequest("GET", tc.path, nil)
		if tc.token != "" {
			req.Header.Set("Authorization", "Bearer "+tc.token)
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != tc.want {
			t.Errorf("GET %s with token %q: %d %s, want %d", tc.path, tc.token, rec.Code, rec.Body, tc.want)
		}
	}
}

// Batch bodies being read are capped: a stalled sender holds its
// reservation, and further batches get 503 at once instead of memory.
func TestInflightBatchBytesCapped(t *testing.T) {
	tok := auth.NewToken("tok-0123456789abcdef")
	m := NewMetrics(nil)
	h := NewHandler(Options{Self: "n1", BlockSize: 4096, Coordinator: fakeCoordinator{}, Local: memory.New(), Metrics: m, Token: tok,
		MaxInflightBatchBytes: wire.MaxBatchBody(4096)})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: h}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })

	// A sender that announces a full batch and never sends it.
	stalled, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer stalled.Close()
	_, _ = io.WriteString(stalled, "POST "+wire.PathBatchApply+" HTTP/1.1\r\nHost: n1\r\nAuthorization: Bearer "+tok.Value()+
		"\r\nContent-Length: "+strconv.FormatInt(wire.MaxBatchBody(4096), 10)+"\r\n\r\n")
	// Its reservation is taken once the handler runs; poll the outcome
	// of a second batch rather than guess when that is.
	deadline := time.Now().Add(5 * time.Second)
	for {
		req, _ := http.NewRequest("POST", "http://"+ln.Addr().String()+wire.PathBatchApply, bytes.NewReader(nil))
		tok.Authorize(req.Header)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var body errorBody
		_ = json.NewDecoder(resp.Body).Decode(&body)
		resp.Body.Close()
		if resp.StatusCode == 503 && body.Code == "overloaded" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("second batch: %d %+v, want 503 overloaded while the first is stalled", resp.StatusCode, body)
		}
	}
	if testutil.ToFloat64(m.BatchesRefused) < 1 {
		t.Fatal("refused batch not counted")
	}
}

// A write refused for lack of space is 507 insufficient_storage.
func TestInsufficientStorageStatus(t *testing.T) {
	status, code := errorStatus(diskguard.ErrInsufficientStorage)
	if status != http.StatusInsufficientStorage || code != "insufficient_storage" {
		t.Fatalf("got %d %s", status, code)
	}
}
