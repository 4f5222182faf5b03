package api

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"

	"github.com/goblocks/goblocks/node/auth"
	"github.com/goblocks/goblocks/node/hlc"
	"github.com/goblocks/goblocks/node/replication"
	"github.com/goblocks/goblocks/node/storage"
	"github.com/goblocks/goblocks/node/storage/memory"
	"github.com/goblocks/goblocks/node/wire"
)

// fakeCoordinator answers every request with err (nil: success).
type fakeCoordinator struct{ err error }

func (f fakeCoordinator) Put(context.Context, string, []byte, replication.Consistency) (hlc.Version, error) {
	return hlc.Version{Timestamp: 1, Node: "n1"}, f.err
}

func (f fakeCoordinator) Get(context.Context, string, replication.Consistency) (storage.Record, error) {
	if f.err != nil {
		return storage.Record{}, f.err
	}
	data := make([]byte, 4096)
	return storage.Record{Data: data, Version: hlc.Version{Timestamp: 1, Node: "n1"}, Checksum: storage.Checksum(data)}, nil
}

func (f fakeCoordinator) Delete(context.Context, string, replication.Consistency) (hlc.Version, error) {
	return hlc.Version{Timestamp: 2, Node: "n1"}, f.err
}

// counts reads every request metric, so a case can assert that exactly the
// expected ones moved.
func counts(m *Metrics) map[string]float64 {
	out := map[string]float64{
		"put": testutil.ToFloat64(m.Put), "get": testutil.ToFloat64(m.Get), "delete": testutil.ToFloat64(m.Delete),
		"internalput": testutil.ToFloat64(m.InternalPut), "internaldelete": testutil.ToFloat64(m.InternalDelete),
		"health": testutil.ToFloat64(m.Health),
	}
	for name, h := range map[string]prometheus.Histogram{"put_duration": m.PutDuration, "get_duration": m.GetDuration, "delete_duration": m.DeleteDuration} {
		out[name] = float64(histogramCount(h))
	}
	return out
}

func histogramCount(h prometheus.Histogram) uint64 {
	ch := make(chan prometheus.Metric, 1)
	h.Collect(ch)
	pb := &dto.Metric{}
	_ = (<-ch).Write(pb)
	return pb.GetHistogram().GetSampleCount()
}

func errorCounts(m *Metrics) map[string]float64 {
	out := map[string]float64{}
	ch := make(chan prometheus.Metric, 64)
	m.Errors.Collect(ch)
	close(ch)
	for metric := range ch {
		pb := &dto.Metric{}
		_ = metric.Write(pb)
		var op, code string
		for _, l := range pb.GetLabel() {
			switch l.GetName() {
			case "operation":
				op = l.GetValue()
			case "error":
				code = l.GetValue()
			}
		}
		out[op+"/"+code] = pb.GetCounter().GetValue()
	}
	return out
}

func TestRequestMetrics(t *testing.T) {
	block := bytes.Repeat([]byte{7}, 4096)
	internalHeaders := func(data []byte, tomb bool) map[string]string {
		h := http.Header{}
		meta := storage.Meta{Version: hlc.Version{Timestamp: 5, Node: "n2"}, Checksum: storage.Checksum(data), Tombstone: tomb}
		wire.SetRecordHeaders(h, meta)
		out := map[string]string{"Authorization": "Bearer tok-0123456789abcdef"}
		for k := range h {
			out[k] = h.Get(k)
		}
		return out
	}
	for _, tc := range []struct {
		name       string
		method     string
		path       string
		body       []byte
		header     map[string]string
		coordErr   error
		notReady   bool
		wantStatus int
		wantCounts map[string]float64 // deltas; every other request metric must stay still
		wantError  string             // "operation/code" that must increase by one
	}{
		{name: "put ok", method: "PUT", path: "/block/a", body: block, wantStatus: 201,
			wantCounts: map[string]float64{"put": 1, "put_duration": 1}},
		{name: "put bad id", method: "PUT", path: "/block/a%2Fb", body: block, wantStatus: 400,
			wantCounts: map[string]float64{"put": 1, "put_duration": 1}, wantError: "put/invalid_id"},
		{name: "put short", method: "PUT", path: "/block/a", body: block[:10], wantStatus: 400,
			wantCounts: map[string]float64{"put": 1, "put_duration": 1}, wantError: "put/bad_size"},
		{name: "put too large", method: "PUT", path: "/block/a", body: append(block, 1), wantStatus: 413,
			wantCounts: map[string]float64{"put": 1, "put_duration": 1}, wantError: "put/too_large"},
		{name: "put bad consistency", method: "PUT", path: "/block/a?consistency=most", body: block, wantStatus: 400,
			wantCounts: map[string]float64{"put": 1, "put_duration": 1}, wantError: "put/invalid_consistency"},
		{name: "put no quorum", method: "PUT", path: "/block/a", body: block, coordErr: replication.ErrUnavailable, wantStatus: 503,
			wantCounts: map[string]float64{"put": 1, "put_duration": 1}, wantError: "put/unavailable"},
		{name: "put internal error", method: "PUT", path: "/block/a", body: block, coordErr: errors.New("disk on fire"), wantStatus: 500,
			wantCounts: map[string]float64{"put": 1, "put_duration": 1}, wantError: "put/internal"},
		{name: "put not ready", method: "PUT", path: "/block/a", body: block, notReady: true, wantStatus: 503,
			wantCounts: map[string]float64{"put": 1, "put_duration": 1}, wantError: "put/unavailable"},
		{name: "get ok", method: "GET", path: "/block/a", wantStatus: 200,
			wantCounts: map[string]float64{"get": 1, "get_duration": 1}},
		{name: "get missing", method: "GET", path: "/block/a", coordErr: storage.ErrNotFound, wantStatus: 404,
			wantCounts: map[string]float64{"get": 1, "get_duration": 1}, wantError: "get/not_found"},
		{name: "get corrupt", method: "GET", path: "/block/a", coordErr: storage.ErrCorrupt, wantStatus: 500,
			wantCounts: map[string]float64{"get": 1, "get_duration": 1}, wantError: "get/corrupt"},
		{name: "get bad id", method: "GET", path: "/block/..", wantStatus: 400,
			wantCounts: map[string]float64{"get": 1, "get_duration": 1}, wantError: "get/invalid_id"},
		{name: "get no quorum", method: "GET", path: "/block/a", coordErr: replication.ErrUnavailable, wantStatus: 503,
			wantCounts: map[string]float64{"get": 1, "get_duration": 1}, wantError: "get/unavailable"},
		{name: "delete ok", method: "DELETE", path: "/block/a", wantStatus: 204,
			wantCounts: map[string]float64{"delete": 1, "delete_duration": 1}},
		{name: "delete bad id", method: "DELETE", path: "/block/%00", wantStatus: 400,
			wantCounts: map[string]float64{"delete": 1, "delete_duration": 1}, wantError: "delete/invalid_id"},
		{name: "delete no quorum", method: "DELETE", path: "/block/a", coordErr: replication.ErrUnavailable, wantStatus: 503,
			wantCounts: map[string]float64{"delete": 1, "delete_duration": 1}, wantError: "delete/unavailable"},
		{name: "health ok", method: "GET", path: "/health", wantStatus: 200,
			wantCounts: map[string]float64{"health": 1}},
		{name: "health not ready", method: "GET", path: "/health", notReady: true, wantStatus: 503,
			wantCounts: map[string]float64{"health": 1}},
		{name: "internal put ok", method: "PUT", path: "/internal/block/a", body: block, header: internalHeaders(block, false), wantStatus: 204,
			wantCounts: map[string]float64{"internalput": 1}},
		{name: "internal put checksum", method: "PUT", path: "/internal/block/a", body: bytes.Repeat([]byte{8}, 4096), header: internalHeaders(block, false), wantStatus: 400,
			wantCounts: map[string]float64{"internalput": 1}, wantError: "internalput/checksum_mismatch"},
		{name: "internal put no headers", method: "PUT", path: "/internal/block/a", body: block, header: map[string]string{"Authorization": "Bearer tok-0123456789abcdef"}, wantStatus: 400,
			wantCounts: map[string]float64{"internalput": 1}, wantError: "internalput/malformed"},
		{name: "internal put no token", method: "PUT", path: "/internal/block/a", body: block, wantStatus: 401,
			wantCounts: map[string]float64{}, wantError: "internal/unauthorized"},
		{name: "internal delete ok", method: "DELETE", path: "/internal/block/b", header: internalHeaders(nil, true), wantStatus: 204,
			wantCounts: map[string]float64{"internaldelete": 1}},
		{name: "internal delete bad id", method: "DELETE", path: "/internal/block/%2e%2e", header: internalHeaders(nil, true), wantStatus: 400,
			wantCounts: map[string]float64{"internaldelete": 1}, wantError: "internaldelete/invalid_id"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := NewMetrics(prometheus.NewRegistry())
			opts := Options{Self: "n1", BlockSize: 4096, Token: auth.NewToken("tok-0123456789abcdef"), Coordinator: fakeCoordinator{tc.coordErr},
				Local: memory.New(), Metrics: m}
			if tc.notReady {
				opts.Ready = func() error { return fmt.Errorf("%w: no ZooKeeper session", replication.ErrUnavailable) }
			}
			h := NewHandler(opts)
			before, beforeErr := counts(m), errorCounts(m)
			req := httptest.NewRequest(tc.method, tc.path, bytes.NewReader(tc.body))
			for k, v := range tc.header {
				req.Header.Set(k, v)
			}
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			if rec.Code != tc.wantStatus {
				t.Fatalf("status %d, want %d: %s", rec.Code, tc.wantStatus, strings.TrimSpace(rec.Body.String()))
			}
			after, afterErr := counts(m), errorCounts(m)
			for name, v := range after {
				if d := v - before[name]; d != tc.wantCounts[name] {
					t.Errorf("%s moved by %v, want %v", name, d, tc.wantCounts[name])
				}
			}
			for key, v := range afterErr {
				want := 0.0
				if key == tc.wantError {
					want = 1
				}
				if d := v - beforeErr[key]; d != want {
					t.Errorf("blocks_errors_count{%s} moved by %v, want %v", key, d, want)
				}
			}
			if tc.wantError != "" && afterErr[tc.wantError] != 1 {
				t.Errorf("blocks_errors_count{%s} = %v, want 1", tc.wantError, afterErr[tc.wantError])
			}
		})
	}
}

// A batch counts each record as the single-record endpoints would.
func TestBatchApplyCountsRecords(t *testing.T) {
	m := NewMetrics(prometheus.NewRegistry())
	tok := auth.NewToken("tok-0123456789abcdef")
	h := NewHandler(Options{Self: "n1", BlockSize: 4096, Coordinator: fakeCoordinator{}, Local: memory.New(), Metrics: m, Token: tok})
	var body bytes.Buffer
	enc := wire.NewEncoder(&body)
	data := bytes.Repeat([]byte{1}, 4096)
	for i := 0; i < 3; i++ {
		_ = enc.Encode(fmt.Sprintf("b%d", i), storage.Record{Data: data, Checksum: storage.Checksum(data), Version: hlc.Version{Timestamp: 9, Node: "n2"}})
	}
	_ = enc.Encode("gone", storage.Record{Tombstone: true, Version: hlc.Version{Timestamp: 9, Node: "n2"}})
	if err := enc.Flush(); err != nil {
		t.Fatal(err)
	}
	rec := httptest.NewRecorder()
	req := httptest.NewRequest("POST", wire.PathBatchApply, &body)
	tok.Authorize(req.Header)
	h.ServeHTTP(rec, req)
	if rec.Code != 200 {
		t.Fatalf("status %d: %s", rec.Code, rec.Body)
	}
	if got := testutil.ToFloat64(m.InternalPut); got != 3 {
		t.Errorf("internalput = %v, want 3", got)
	}
	if got := testutil.ToFloat64(m.InternalDelete); got != 1 {
		t.Errorf("internaldelete = %v, want 1", got)
	}
}

// Every server-side error series exists at zero before the first error, so
// rate() over it sees that error (the SLO rules depend on it).
func TestServerErrorSeriesStartAtZero(t *testing.T) {
	m := NewMetrics(prometheus.NewRegistry())
	got := errorCounts(m)
	for _, op := range []string{"put", "get", "delete"} {
		for _, code := range serverErrorCodes {
			if v, ok := got[op+"/"+code]; !ok || v != 0 {
				t.Errorf("series %s/%s: present %v value %v", op, code, ok, v)
			}
		}
	}
	// The list matches errorStatus: each code is a 5xx.
	for _, err := range []error{errors.New("x"), storage.ErrCorrupt, replication.ErrUnavailable, storage.ErrClosed} {
		status, code := errorStatus(err)
		found := false
		for _, c := range serverErrorCodes {
			found = found || c == code
		}
		if status < 500 || !found {
			t.Errorf("%v maps to %d %s, not a listed server error", err, status, code)
		}
	}
}
