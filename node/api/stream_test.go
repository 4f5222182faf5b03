package api

import (
	"bufio"
	"encoding/binary"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/goblocks/goblocks/internal/testkit"
	"github.com/goblocks/goblocks/node/auth"
	"github.com/goblocks/goblocks/node/hlc"
	"github.com/goblocks/goblocks/node/storage"
	"github.com/goblocks/goblocks/node/storage/memory"
	"github.com/goblocks/goblocks/node/wire"
)

type streamServer struct {
	addr    string
	tok     *auth.Token
	metrics *Metrics
	local   storage.Engine
	srv     *http.Server
}

func startStreamServer(t *testing.T) *streamServer {
	t.Helper()
	s := &streamServer{tok: auth.NewToken("tok-0123456789abcdef"), metrics: NewMetrics(nil), local: memory.New()}
	h := NewHandler(Options{Self: "n1", BlockSize: 4096, Coordinator: fakeCoordinator{}, Local: s.local, Metrics: s.metrics, Token: s.tok})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s.addr = ln.Addr().String()
	s.srv = NewServer(s.addr, h)
	go func() { _ = s.srv.Serve(ln) }()
	t.Cleanup(func() { _ = s.srv.Close(); h.CloseStreams() })
	return s
}

// upgrade opens a raw stream with the given Authorization and Upgrade
// headers and returns the connection and the server's answer.
func (s *streamServer) upgrade(t *testing.T, token, protocol string) (net.Conn, *bufio.Reader, *http.Response) {
	t.Helper()
	conn, err := net.Dial("tcp", s.addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	req := "GET " + wire.PathStream + " HTTP/1.1\r\nHost: n1\r\n"
	if token != "" {
		req += "Authorization: Bearer " + token + "\r\n"
	}
	if protocol != "" {
		req += "Connection: Upgrade\r\nUpgrade: " + protocol + "\r\n"
	}
	if _, err := io.WriteString(conn, req+"\r\n"); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	return conn, br, resp
}

func applyBody(t *testing.T, id string, rec storage.Record) []byte {
	t.Helper()
	b, err := wire.AppendFrame(nil, id, rec)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// The upgrade is an internal request like any other: without the token it
// is refused with 401, without the Upgrade headers with 400, both as JSON.
func TestStreamUpgradeRefusals(t *testing.T) {
	s := startStreamServer(t)
	for _, tc := range []struct {
		name, token, protocol string
		status                int
		code                  string
	}{
		{"no token", "", wire.StreamProtocol, 401, "unauthorized"},
		{"wrong token", "wrong-0123456789abcdef", wire.StreamProtocol, 401, "unauthorized"},
		{"no upgrade", s.tok.Value(), "", 400, "malformed"},
		{"other protocol", s.tok.Value(), "websocket", 400, "malformed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, _, resp := s.upgrade(t, tc.token, tc.protocol)
			var body errorBody
			_ = json.NewDecoder(resp.Body).Decode(&body)
			if resp.StatusCode != tc.status || body.Code != tc.code {
				t.Fatalf("got %d %+v, want %d %s", resp.StatusCode, body, tc.status, tc.code)
			}
		})
	}
	if got := testutil.ToFloat64(s.metrics.StreamsOpen); got != 0 {
		t.Errorf("streams open = %v after refusals", got)
	}
}

// On an open stream, a request for an unknown op is answered with 400 and
// the stream goes on; the batch endpoints' own checks answer as over HTTP;
// a frame that cannot be delimited ends the stream without a reply.
func TestStreamRequests(t *testing.T) {
	s := startStreamServer(t)
	conn, br, resp := s.upgrade(t, s.tok.Value(), wire.StreamProtocol)
	if resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("upgrade: %d", resp.StatusCode)
	}
	testkit.Eventually(t, 5*time.Second, func() error {
		if got := testutil.ToFloat64(s.metrics.StreamsOpen); got != 1 {
			return errors.New("stream not counted yet")
		}
		return nil
	})
	v := hlc.Version{Timestamp: hlc.NewClock(nil, time.Minute).Now(), Node: "n0"}
	data := make([]byte, 4096)
	data[0] = 1
	send := func(q wire.StreamRequest) wire.StreamResponse {
		t.Helper()
		if _, err := conn.Write(wire.AppendStreamRequest(nil, q)); err != nil {
			t.Fatal(err)
		}
		_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		r, err := wire.ReadStreamResponse(br, wire.MaxStreamBody(4096))
		if err != nil {
			t.Fatalf("request %d: %v", q.ID, err)
		}
		if r.ID != q.ID {
			t.Fatalf("answer to %d for request %d", r.ID, q.ID)
		}
		return r
	}
	errorCode := func(r wire.StreamResponse) string {
		var body errorBody
		_ = json.Unmarshal(r.Body, &body)
		return body.Code
	}

	if r := send(wire.StreamRequest{ID: 1, Op: 77}); r.Status != 400 || errorCode(r) != "malformed" {
		t.Fatalf("unknown op: %d %s", r.Status, r.Body)
	}
	r := send(wire.StreamRequest{ID: 2, Op: wire.OpApply, Body: applyBody(t, "blk", storage.NewRecord(data, v))})
	if r.Status != 200 || string(r.Body) != string(wire.ResultApplied) {
		t.Fatalf("apply: %d %q", r.Status, r.Body)
	}
	if got, err := s.local.Get("blk"); err != nil || got.Version != v {
		t.Fatalf("stored: %v %v", got.Version, err)
	}
	short := applyBody(t, "short", storage.NewRecord(data[:100], v))
	if r := send(wire.StreamRequest{ID: 3, Op: wire.OpApply, Body: short}); r.Status != 400 || errorCode(r) != "bad_size" {
		t.Fatalf("short block: %d %s", r.Status, r.Body)
	}
	if r := send(wire.StreamRequest{ID: 4, Op: wire.OpMeta, Body: []byte("blk\nnone")}); r.Status != 200 || r.Body[0] != wire.FetchFound || r.Body[len(r.Body)-1] != wire.FetchAbsent {
		t.Fatalf("meta: %d %q", r.Status, r.Body)
	}
	if _, err := s.local.Get("short"); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("refused block stored: %v", err)
	}

	// A length past the limit: the server closes the stream.
	if _, err := conn.Write(binary.BigEndian.AppendUint32(nil, 1<<31)); err != nil {
		t.Fatal(err)
	}
	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := br.ReadByte(); err != io.EOF && !errors.Is(err, net.ErrClosed) && !strings.Contains(err.Error(), "reset") {
		t.Fatalf("after a bad length: %v, want the stream closed", err)
	}
	testkit.Eventually(t, 5*time.Second, func() error {
		if got := testutil.ToFloat64(s.metrics.StreamsOpen); got != 0 {
			return errors.New("closed stream still counted")
		}
		return nil
	})
	if got := testutil.ToFloat64(s.metrics.Errors.WithLabelValues("stream", "bad_request")); got != 2 {
		t.Errorf("stream bad_request errors = %v, want 2 (unknown op, bad length)", got)
	}
}

// Shutdown ends the streams, which http.Server alone does not know about.
func TestStreamClosedByShutdown(t *testing.T) {
	s := startStreamServer(t)
	_, br, resp := s.upgrade(t, s.tok.Value(), wire.StreamProtocol)
	if resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("upgrade: %d", resp.StatusCode)
	}
	if err := s.srv.Shutdown(t.Context()); err != nil {
		t.Fatal(err)
	}
	if _, err := br.ReadByte(); err == nil {
		t.Fatal("stream still open after Shutdown")
	}
}

// Stream frames draw on the same memory budget as HTTP batch bodies
// (MaxInflightBatchBytes): while a stalled HTTP batch holds all of it, a
// frame waits unread instead of being buffered, and is answered once the
// budget frees up.
func TestStreamFramesShareTheBatchBudget(t *testing.T) {
	tok := auth.NewToken("tok-0123456789abcdef")
	h := NewHandler(Options{Self: "n1", BlockSize: 4096, Coordinator: fakeCoordinator{}, Local: memory.New(), Token: tok,
		MaxInflightBatchBytes: wire.MaxBatchBody(4096)})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := NewServer(ln.Addr().String(), h)
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close(); h.CloseStreams() })
	s := &streamServer{addr: ln.Addr().String(), tok: tok}

	stalled, err := net.Dial("tcp", s.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer stalled.Close()
	_, _ = io.WriteString(stalled, "POST "+wire.PathBatchApply+" HTTP/1.1\r\nHost: n1\r\nAuthorization: Bearer "+tok.Value()+
		"\r\nContent-Length: "+strconv.FormatInt(wire.MaxBatchBody(4096), 10)+"\r\n\r\n")
	testkit.Eventually(t, 5*time.Second, func() error {
		if len(stacks("api.(*server).batchApply")) == 0 {
			return errors.New("the stalled batch is not being read yet")
		}
		return nil
	})

	conn, br, resp := s.upgrade(t, tok.Value(), wire.StreamProtocol)
	if resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("upgrade: %d", resp.StatusCode)
	}
	if _, err := conn.Write(wire.AppendStreamRequest(nil, wire.StreamRequest{ID: 1, Op: wire.OpMeta, Body: []byte("x")})); err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, 5*time.Second, func() error {
		if len(stacks("api.(*streamConn).next(")) == 0 {
			return errors.New("the stream is not waiting for the budget")
		}
		return nil
	})
	stalled.Close() // its handler fails to read the body and releases the budget
	_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	r, err := wire.ReadStreamResponse(br, 1<<20)
	if err != nil || r.ID != 1 || r.Status != 200 {
		t.Fatalf("answer after the budget freed: %+v, %v", r, err)
	}
}

// stacks returns the goroutine stacks that contain frame.
func stacks(frame string) []string {
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	var out []string
	for _, g := range strings.Split(string(buf), "\n\n") {
		if strings.Contains(g, frame) {
			out = append(out, g)
		}
	}
	return out
}
