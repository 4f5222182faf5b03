package client

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/goblocks/goblocks/internal/testkit"
)

// fakeNode answers every request with status and a JSON error body (or,
// for 2xx, the block/version a node would send) and counts requests.
type fakeNode struct {
	*httptest.Server
	hits   atomic.Int64
	status int
	code   string
}

func newFakeNode(t *testing.T, status int, code string) *fakeNode {
	t.Helper()
	f := &fakeNode{status: status, code: code}
	f.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f.hits.Add(1)
		_, _ = io.Copy(io.Discard, r.Body)
		switch {
		case f.status == http.StatusCreated:
			w.Header().Set("X-Goblocks-Version", "v1")
			w.WriteHeader(f.status)
			fmt.Fprint(w, `{"id":"x","version":"v1"}`)
		case f.status == http.StatusOK:
			w.Write([]byte("payload"))
		case f.status < 300:
			w.WriteHeader(f.status)
		default:
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(f.status)
			fmt.Fprintf(w, `{"error":"fake %d","code":%q}`+"\n", f.status, f.code)
		}
	}))
	t.Cleanup(f.Close)
	return f
}

func (f *fakeNode) addr() string { return strings.TrimPrefix(f.URL, "http://") }

func mustNew(t *testing.T, addrs []string, opts ...Option) *Client {
	t.Helper()
	c, err := New(addrs, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

func TestTypedErrors(t *testing.T) {
	cases := []struct {
		status int
		code   string
		want   error
	}{
		{http.StatusBadRequest, "invalid_id", ErrBadRequest},
		{http.StatusRequestEntityTooLarge, "too_large", ErrBadRequest},
		{http.StatusNotFound, "not_found", ErrNotFound},
		{http.StatusConflict, "conflict", ErrConflict},
		{http.StatusServiceUnavailable, "unavailable", ErrUnavailable},
	}
	all := []error{ErrBadRequest, ErrNotFound, ErrConflict, ErrUnavailable}
	for _, tc := range cases {
		t.Run(fmt.Sprint(tc.status), func(t *testing.T) {
			f := newFakeNode(t, tc.status, tc.code)
			c := mustNew(t, []string{f.addr()})
			_, err := c.Get(context.Background(), "b1")
			for _, s := range all {
				if got := errors.Is(err, s); got != (s == tc.want) {
					t.Errorf("errors.Is(%v, %v) = %v", err, s, got)
				}
			}
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("%v is not an *Error", err)
			}
			if e.Status != tc.status || e.Code != tc.code || e.Node != f.addr() || e.Message != fmt.Sprintf("fake %d", tc.status) {
				t.Errorf("got %+v", e)
			}
		})
	}
}

func TestRetryOnNextNode(t *testing.T) {
	for _, first := range []string{"down", "503", "500"} {
		t.Run(first, func(t *testing.T) {
			var bad string
			var badNode *fakeNode
			switch first {
			case "down":
				bad = testkit.ClosedAddr(t)
			case "503":
				badNode = newFakeNode(t, http.StatusServiceUnavailable, "unavailable")
				bad = badNode.addr()
			case "500":
				badNode = newFakeNode(t, http.StatusInternalServerError, "internal")
				bad = badNode.addr()
			}
			good := newFakeNode(t, http.StatusCreated, "")
			c := mustNew(t, []string{bad, good.addr()})
			// Round-robin: the calls start on each node in turn; every
			// one must end on the good node.
			for i := range 4 {
				v, err := c.Put(context.Background(), fmt.Sprint("b", i), make([]byte, DefaultBlockSize))
				if err != nil || v != "v1" {
					t.Fatalf("put %d: %q, %v", i, v, err)
				}
			}
			if good.hits.Load() != 4 {
				t.Errorf("good node got %d requests, want 4", good.hits.Load())
			}
			if badNode != nil && badNode.hits.Load() != 2 {
				t.Errorf("bad node got %d requests, want 2", badNode.hits.Load())
			}
		})
	}
}

func TestNoRetryOn4xx(t *testing.T) {
	for _, status := range []int{http.StatusNotFound, http.StatusBadRequest, http.StatusConflict} {
		a, b := newFakeNode(t, status, "x"), newFakeNode(t, status, "x")
		c := mustNew(t, []string{a.addr(), b.addr()})
		if _, err := c.Get(context.Background(), "b1"); err == nil {
			t.Fatal("no error")
		}
		if n := a.hits.Load() + b.hits.Load(); n != 1 {
			t.Errorf("status %d: %d requests, want 1", status, n)
		}
	}
}

func TestAllNodesDown(t *testing.T) {
	c := mustNew(t, []string{testkit.ClosedAddr(t), testkit.ClosedAddr(t)}, WithRetries(3))
	_, err := c.Get(context.Background(), "b1")
	var e *Error
	if !errors.Is(err, ErrUnavailable) || !errors.As(err, &e) || e.Status != 0 || e.Err == nil {
		t.Fatalf("got %v", err)
	}
}

func TestContextEndsRetries(t *testing.T) {
	f := newFakeNode(t, http.StatusServiceUnavailable, "unavailable")
	c := mustNew(t, []string{f.addr()}, WithRetries(1000))
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := c.Get(ctx, "b1")
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("got %v, want the context's error", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("took %v after the context ended", d)
	}
	ctx, cancel = context.WithCancel(context.Background())
	cancel()
	if _, err := c.Get(ctx, "b1"); !errors.Is(err, context.Canceled) || errors.Is(err, ErrUnavailable) {
		t.Fatalf("cancelled: got %v", err)
	}
}

func TestPutWrongSizeNotSent(t *testing.T) {
	f := newFakeNode(t, http.StatusCreated, "")
	c := mustNew(t, []string{f.addr()})
	for _, n := range []int{0, 100, DefaultBlockSize + 1} {
		if _, err := c.Put(context.Background(), "b1", make([]byte, n)); !errors.Is(err, ErrBadRequest) {
			t.Errorf("%d bytes: %v", n, err)
		}
	}
	if _, err := c.Get(context.Background(), ""); !errors.Is(err, ErrBadRequest) {
		t.Errorf("empty id: %v", err)
	}
	if f.hits.Load() != 0 {
		t.Errorf("%d requests sent", f.hits.Load())
	}
	c = mustNew(t, []string{f.addr()}, WithBlockSize(100))
	if _, err := c.Put(context.Background(), "b1", make([]byte, 100)); err != nil {
		t.Errorf("BlockSize 100: %v", err)
	}
}

// The request the server sees: escaped id, consistency, token.
func TestRequestShape(t *testing.T) {
	var got *http.Request
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got = r
		w.WriteHeader(http.StatusNoContent)
	}))
	defer srv.Close()
	c := mustNew(t, []string{srv.URL + "/"}, WithConsistency("all"), WithToken("s3cret"))
	if err := c.Delete(context.Background(), "a/b"); err != nil {
		t.Fatal(err)
	}
	if got.Method != http.MethodDelete || got.URL.RawPath != "/block/a%2Fb" || got.URL.Query().Get("consistency") != "all" ||
		got.Header.Get("Authorization") != "Bearer s3cret" {
		t.Errorf("got %s %s %q auth %q", got.Method, got.URL.RawPath, got.URL.RawQuery, got.Header.Get("Authorization"))
	}
}

func TestNewValidates(t *testing.T) {
	for _, tc := range []struct {
		addrs []string
		opts  []Option
	}{
		{nil, nil},
		{[]string{"ftp://x:1"}, nil},
		{[]string{""}, nil},
		{[]string{"a:1"}, []Option{WithConsistency("most")}},
		{[]string{"a:1"}, []Option{WithBlockSize(0)}},
		{[]string{"a:1"}, []Option{WithTimeout(-1)}},
		{[]string{"a:1"}, []Option{WithRetries(-2)}},
	} {
		if _, err := New(tc.addrs, tc.opts...); err == nil {
			t.Errorf("New(%q) accepted", tc.addrs)
		}
	}
}

func TestNodePinsOneNode(t *testing.T) {
	down := testkit.ClosedAddr(t)
	up := newFakeNode(t, http.StatusOK, "")
	c := mustNew(t, []string{up.addr()})
	if _, err := c.Node(down).Get(context.Background(), "b1"); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("pinned to a down node: %v", err)
	}
	if up.hits.Load() != 0 {
		t.Errorf("pinned client reached another node")
	}
	if _, err := c.Node("http://"+up.addr()).Get(context.Background(), "b1"); err != nil {
		t.Fatal(err)
	}
}

func TestHealthAndAdmin(t *testing.T) {
	mux := http.NewServeMux()
	mux.HandleFunc("/health", func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(http.StatusServiceUnavailable)
		fmt.Fprint(w, `{"status":"unavailable","node":"n1","error":"no session"}`)
	})
	mux.HandleFunc("/admin/cluster", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprint(w, `{"node":"n1","addr":"h:1","blocks":7,"epoch":3,"members":[{"name":"n1","addr":"h:1","vnodes":20}],
			"participants":[{"name":"n1","registered":true,"ready":true,"sent_blocks":2}],"transfer":{"planned_blocks":4}}`)
	})
	mux.HandleFunc("/admin/ring", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprint(w, `{"node":"n1","epoch":3,"rf":3,"ring":{"members":[{"name":"n1","share":1,"primary_share":1}],"vnodes":[{"token":"18446744073709551615","node":"n1"}]}}`)
	})
	srv := httptest.NewServer(mux)
	defer srv.Close()
	c := mustNew(t, []string{srv.URL})
	h, err := c.Health(context.Background(), "")
	if !errors.Is(err, ErrUnavailable) || h.Status != "unavailable" || h.Error != "no session" {
		t.Errorf("health: %+v, %v", h, err)
	}
	st, err := c.ClusterStatus(context.Background(), srv.URL)
	if err != nil || st.Blocks != 7 || st.Epoch != 3 || len(st.Members) != 1 || !st.Participants[0].Ready || st.Transfer.PlannedBlocks != 4 {
		t.Errorf("status: %+v, %v", st, err)
	}
	r, err := c.Ring(context.Background(), "")
	if err != nil || r.RF != 3 || r.Ring.VNodes[0].Token != "18446744073709551615" || r.Target != nil {
		t.Errorf("ring: %+v, %v", r, err)
	}
}
