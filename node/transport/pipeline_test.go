package transport_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/goblocks/goblocks/internal/testkit"
	"github.com/goblocks/goblocks/node/storage"
	"github.com/goblocks/goblocks/node/transport"
	"github.com/goblocks/goblocks/node/wire"
)

// TestBatching holds the peer's first requests so that every other call
// queues behind them, then checks that the queued calls left in one batch
// and that every call got its own answer.
func TestBatching(t *testing.T) {
	const calls = 100
	for _, kind := range []string{"apply", "fetch", "meta", "digest"} {
		t.Run(kind, func(t *testing.T) {
			checkLeaks(t)
			gate := make(chan struct{})
			peer := newFakePeer(t, gate)
			path := map[string]string{"apply": wire.PathBatchApply, "fetch": wire.PathBatchFetch,
				"meta": wire.PathBatchMeta, "digest": wire.PathBatchDigest}[kind]
			if kind != "apply" {
				for i := range calls {
					if i%2 == 0 {
						peer.put(fmt.Sprint("b", i), record(i+1))
					}
				}
			}
			c := transport.NewClient(transport.Options{})
			t.Cleanup(c.Close)

			var wg sync.WaitGroup
			for i := range calls {
				wg.Go(func() {
					id := fmt.Sprint("b", i)
					if kind == "apply" {
						held, err := c.Apply(t.Context(), peer.addr(), id, record(i+1))
						if err != nil || held != version(i+1) {
							t.Errorf("Apply(%s) = %v, %v; want %v", id, held, err, version(i+1))
						}
						return
					}
					if kind == "meta" || kind == "digest" {
						fetch := c.FetchMeta
						if kind == "digest" {
							fetch = c.FetchDigest
						}
						m, err := fetch(t.Context(), peer.addr(), id)
						switch {
						case i%2 == 1 && !errors.Is(err, storage.ErrNotFound):
							t.Errorf("%s(%s) = %v; want storage.ErrNotFound", kind, id, err)
						case i%2 == 0 && (err != nil || m != record(i+1).Meta()):
							t.Errorf("%s(%s) = %+v, %v; want %+v", kind, id, m, err, record(i+1).Meta())
						}
						return
					}
					rec, err := c.Fetch(t.Context(), peer.addr(), id)
					switch {
					case i%2 == 1 && !errors.Is(err, storage.ErrNotFound):
						t.Errorf("Fetch(%s) = %v; want storage.ErrNotFound", id, err)
					case i%2 == 0 && (err != nil || rec.Version != version(i+1) || string(rec.Data) != string(record(i+1).Data)):
						t.Errorf("Fetch(%s) = %+v, %v; want %+v", id, rec, err, record(i+1))
					}
				})
			}
			// Every call is now either in one of the (at most
			// pipelineDepth) held requests or waiting to be taken.
			eventually(t, "every call waits in submit", func() bool {
				return len(goroutines("node/transport.(*Client).submit", "select")) == calls
			})
			close(gate)
			within(t, 10*time.Second, "the calls", wg.Wait)

			requests, records := peer.counts(path)
			batches, carried := c.BatchStats()
			if records != calls || carried != calls {
				t.Errorf("peer received %d records, client reports %d calls; want %d", records, carried, calls)
			}
			// Two held requests, then one with everything that queued.
			if requests > 3 || batches != int64(requests) {
				t.Errorf("%d calls went in %d requests (client counted %d batches); want at most 3", calls, requests, batches)
			}
		})
	}
}

// TestRetire checks that an idle pipeline's goroutine exits and that a
// later call to the same peer starts a new one.
func TestRetire(t *testing.T) {
	checkLeaks(t)
	peer := newFakePeer(t, nil)
	c := transport.NewClientWithIdle(transport.Options{}, time.Millisecond)
	t.Cleanup(c.Close)

	for round := range 3 {
		if _, err := c.Apply(t.Context(), peer.addr(), "b", record(round+1)); err != nil {
			t.Fatalf("round %d: Apply: %v", round, err)
		}
		if _, err := c.Fetch(t.Context(), peer.addr(), "b"); err != nil {
			t.Fatalf("round %d: Fetch: %v", round, err)
		}
		eventually(t, "the idle pipelines retire", func() bool {
			return c.Pipelines() == 0 && len(goroutines(pipelineFrame, "")) == 0
		})
	}
}

// TestClose checks that Close waits for the pipelines and that calls
// made after it fail.
func TestClose(t *testing.T) {
	checkLeaks(t)
	peer := newFakePeer(t, nil)
	c := transport.NewClient(transport.Options{})
	if _, err := c.Apply(t.Context(), peer.addr(), "b", record(1)); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Fetch(t.Context(), peer.addr(), "b"); err != nil {
		t.Fatal(err)
	}
	if c.Pipelines() != 2 {
		t.Fatalf("%d pipelines running; want 2", c.Pipelines())
	}
	c.Close()
	if g := goroutines(pipelineFrame, ""); len(g) > 0 {
		t.Fatalf("Close returned with pipeline goroutines running:\n%s", g)
	}
	if _, err := c.Apply(t.Context(), peer.addr(), "b", record(2)); !errors.Is(err, transport.ErrClientClosed) {
		t.Errorf("Apply after Close: %v; want %v", err, transport.ErrClientClosed)
	}
	if _, err := c.Fetch(t.Context(), peer.addr(), "b"); !errors.Is(err, transport.ErrClientClosed) {
		t.Errorf("Fetch after Close: %v; want %v", err, transport.ErrClientClosed)
	}
	c.Close() // idempotent
}

// TestCloseInFlight closes the client while its calls wait on a peer that
// never answers: Close cancels the requests, waits for them, and every
// call fails with the client closed.
func TestCloseInFlight(t *testing.T) {
	checkLeaks(t)
	const calls = 20
	peer := newFakePeer(t, make(chan struct{})) // never opened
	c := transport.NewClient(transport.Options{})
	errs := make(chan error, calls)
	for i := range calls {
		go func() {
			_, err := c.Apply(context.Background(), peer.addr(), fmt.Sprint("b", i), record(i+1))
			errs <- err
		}()
	}
	eventually(t, "every call waits in submit", func() bool {
		return len(goroutines("node/transport.(*Client).submit", "select")) == calls
	})
	within(t, 10*time.Second, "Close", c.Close)
	if g := goroutines(pipelineFrame, ""); len(g) > 0 {
		t.Fatalf("Close returned with pipeline goroutines running:\n%s", g)
	}
	for range calls {
		select {
		case err := <-errs:
			if !errors.Is(err, transport.ErrClientClosed) {
				t.Errorf("call in flight at Close: %v; want %v", err, transport.ErrClientClosed)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("a call in flight at Close never returned")
		}
	}
}

// TestCloseWhileSubmitting closes the client while calls keep arriving:
// each call either completes or fails with the client closed; none is
// left waiting.
func TestCloseWhileSubmitting(t *testing.T) {
	checkLeaks(t)
	peer := newFakePeer(t, nil)
	c := transport.NewClientWithIdle(transport.Options{}, time.Microsecond)
	var wg sync.WaitGroup
	var succeeded atomic.Int64
	for g := range 16 {
		wg.Go(func() {
			for i := 0; ; i++ {
				id := fmt.Sprint("g", g)
				var err error
				if i%2 == 0 {
					_, err = c.Apply(context.Background(), peer.addr(), id, record(i+1))
				} else {
					_, err = c.Fetch(context.Background(), peer.addr(), id)
				}
				if errors.Is(err, transport.ErrClientClosed) {
					return
				}
				if err != nil {
					t.Errorf("call before Close: %v", err)
					return
				}
				succeeded.Add(1)
			}
		})
	}
	eventually(t, "calls go through", func() bool { return succeeded.Load() >= 16*10 })
	within(t, 10*time.Second, "Close", c.Close)
	within(t, 10*time.Second, "the calls", wg.Wait)
}

// TestPeerErrors checks that every call gets an error, and none hangs,
// when the peer fails or answers nonsense.
func TestPeerErrors(t *testing.T) {
	tests := []struct {
		name    string
		handler http.HandlerFunc // nil: nothing listens
		remote  bool             // the error wraps transport.ErrRemote
	}{
		{name: "5xx", remote: true, handler: func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(http.StatusInternalServerError)
			_, _ = w.Write([]byte(`{"error":"disk on fire","code":"internal"}`))
		}},
		{name: "connection refused"},
		{name: "empty answer", remote: true, handler: func(w http.ResponseWriter, r *http.Request) {}},
		{name: "unknown status", remote: true, handler: func(w http.ResponseWriter, r *http.Request) {
			_, _ = w.Write([]byte("??????????????????????????????????????????"))
		}},
		{name: "garbage frame", handler: func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == wire.PathBatchApply {
				_, _ = w.Write([]byte{wire.ResultNotApplied, 1, 2})
			} else {
				_, _ = w.Write([]byte{wire.FetchFound, 0xff, 0xff, 0xff})
			}
		}},
		{name: "hang up", handler: func(w http.ResponseWriter, r *http.Request) {
			panic(http.ErrAbortHandler)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			checkLeaks(t)
			addr := ""
			if tt.handler == nil {
				addr = testkit.ClosedAddr(t)
			} else {
				srv := httptest.NewServer(tt.handler)
				t.Cleanup(srv.Close)
				addr = srv.Listener.Addr().String()
			}
			c := transport.NewClient(transport.Options{})
			t.Cleanup(c.Close)
			var wg sync.WaitGroup
			for i := range 20 {
				wg.Go(func() {
					id := fmt.Sprint("b", i)
					var err error
					if i%2 == 0 {
						_, err = c.Apply(context.Background(), addr, id, record(i+1))
					} else {
						_, err = c.Fetch(context.Background(), addr, id)
					}
					switch {
					case err == nil:
						t.Errorf("call %d: no error", i)
					case tt.remote && !errors.Is(err, transport.ErrRemote):
						t.Errorf("call %d: %v; want an error wrapping %v", i, err, transport.ErrRemote)
					}
				})
			}
			within(t, 10*time.Second, "the calls", wg.Wait)
		})
	}
}

// TestSubmitRetireStress makes pipelines retire as often as they can while
// calls keep arriving: a call handed to a pipeline that retires under it
// must still be answered. Run it under -race.
func TestSubmitRetireStress(t *testing.T) {
	checkLeaks(t)
	peers := []*fakePeer{newFakePeer(t, nil), newFakePeer(t, nil)}
	c := transport.NewClientWithIdle(transport.Options{}, time.Nanosecond)
	t.Cleanup(c.Close)
	// A stranded call would wait forever; the deadline turns it into an
	// error the test reports.
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	rounds := 300
	if testing.Short() {
		rounds = 50
	}
	var wg sync.WaitGroup
	for g := range 32 {
		wg.Go(func() {
			peer := peers[g%len(peers)]
			id := fmt.Sprint("g", g)
			for i := range rounds {
				if i%2 == 0 {
					held, err := c.Apply(ctx, peer.addr(), id, record(i+1))
					if err != nil || held != version(i+1) {
						t.Errorf("goroutine %d, call %d: Apply = %v, %v; want %v", g, i, held, err, version(i+1))
						return
					}
					continue
				}
				rec, err := c.Fetch(ctx, peer.addr(), id)
				if err != nil || rec.Version != version(i) {
					t.Errorf("goroutine %d, call %d: Fetch = %v, %v; want version %v", g, i, rec.Version, err, version(i))
					return
				}
			}
		})
	}
	within(t, 30*time.Second, "the calls", wg.Wait)
}
