package wire

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"reflect"
	"strings"
	"testing"
)

func TestStreamRequestRoundTrip(t *testing.T) {
	for _, q := range []StreamRequest{
		{ID: 1, Op: OpApply, Body: []byte("frames")},
		{ID: 1<<32 - 1, Op: OpFetch, Flags: StreamTransfer, Body: []byte("a\nb")},
		{ID: 7, Op: OpMeta, Traces: []map[string]string{
			{"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", TraceBlockID: "blk"},
			{"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"},
		}, Body: []byte{}},
		{ID: 8, Op: OpDigest, Body: []byte{}},
	} {
		r := bufio.NewReader(bytes.NewReader(AppendStreamRequest(nil, q)))
		got, err := ReadStreamRequest(r, 64)
		if err != nil {
			t.Fatalf("%+v: %v", q, err)
		}
		if !reflect.DeepEqual(got, q) {
			t.Errorf("round trip: got %+v, want %+v", got, q)
		}
		if _, err := ReadStreamRequest(r, 64); err != io.EOF {
			t.Errorf("after the frame: %v, want io.EOF", err)
		}
	}
}

func TestStreamResponseRoundTrip(t *testing.T) {
	var b []byte
	b = AppendStreamResponse(b, StreamResponse{ID: 3, Status: 200, Body: []byte("results")})
	b = AppendStreamResponse(b, StreamResponse{ID: 4, Status: 503, Body: []byte(`{"error":"x"}`)})
	r := bufio.NewReader(bytes.NewReader(b))
	for _, want := range []StreamResponse{{3, 200, []byte("results")}, {4, 503, []byte(`{"error":"x"}`)}} {
		got, err := ReadStreamResponse(r, 64)
		if err != nil || !reflect.DeepEqual(got, want) {
			t.Fatalf("got %+v, %v; want %+v", got, err, want)
		}
	}
}

// Requests that were read whole but ask for something unknown come back
// as ErrBadStreamRequest with their id (the server answers them and goes
// on); lengths that do not fit, or frames cut short, are fatal errors
// that allocate nothing past the bound.
func TestStreamRequestErrors(t *testing.T) {
	good := AppendStreamRequest(nil, StreamRequest{ID: 9, Op: OpApply, Body: []byte("x")})
	withByte := func(i int, v byte) []byte {
		b := bytes.Clone(good)
		b[i] = v
		return b
	}
	huge := binary.BigEndian.AppendUint32(nil, 1<<31)
	for _, tc := range []struct {
		name  string
		frame []byte
		bad   bool // ErrBadStreamRequest, with the id
	}{
		{"unknown op", withByte(8, 99), true},
		{"unknown flags", withByte(9, 0x80), true},
		{"too many traces", withByte(10, MaxStreamTraces+1), true},
		{"trace cut short", withByte(10, 1), true},
		{"body over the limit", AppendStreamRequest(nil, StreamRequest{ID: 9, Op: OpApply, Body: bytes.Repeat([]byte("x"), 65)}), true},
		{"length past every limit", append(huge, good[4:]...), false},
		{"length below the header", []byte{0, 0, 0, 2, 0, 0}, false},
		{"cut short", good[:len(good)-1], false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			q, err := ReadStreamRequest(bufio.NewReader(bytes.NewReader(tc.frame)), 64)
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("err = %v, want ErrMalformed", err)
			}
			if got := errors.Is(err, ErrBadStreamRequest); got != tc.bad {
				t.Fatalf("ErrBadStreamRequest = %v, want %v (%v)", got, tc.bad, err)
			}
			if tc.bad && q.ID != 9 {
				t.Errorf("id = %d, want 9", q.ID)
			}
		})
	}
	if _, err := ReadStreamResponse(bufio.NewReader(bytes.NewReader(AppendStreamResponse(nil, StreamResponse{ID: 1, Status: 42}))), 64); !errors.Is(err, ErrMalformed) {
		t.Errorf("status 42: %v, want ErrMalformed", err)
	}
}

// Trace contexts too large for the format are left out, not sent cut.
func TestStreamRequestDropsOversizedTraces(t *testing.T) {
	q := StreamRequest{ID: 1, Op: OpMeta, Traces: []map[string]string{{"traceparent": "tp", "huge": strings.Repeat("v", maxTraceValue+1)}}}
	got, err := ReadStreamRequest(bufio.NewReader(bytes.NewReader(AppendStreamRequest(nil, q))), 64)
	if err != nil {
		t.Fatal(err)
	}
	if want := []map[string]string{{"traceparent": "tp"}}; !reflect.DeepEqual(got.Traces, want) {
		t.Errorf("traces = %v, want %v", got.Traces, want)
	}
}

// FuzzReadStreamRequest: arbitrary bytes never panic, every error is
// ErrMalformed or io.EOF, bodies stay within the limit, and what is read
// re-encodes to what was read.
func FuzzReadStreamRequest(f *testing.F) {
	f.Add(AppendStreamRequest(nil, StreamRequest{ID: 1, Op: OpApply, Body: []byte("body")}))
	f.Add(AppendStreamRequest(nil, StreamRequest{ID: 2, Op: OpMeta, Traces: []map[string]string{{"traceparent": "x"}}}))
	f.Fuzz(func(t *testing.T, data []byte) {
		r := bufio.NewReader(bytes.NewReader(data))
		for {
			q, err := ReadStreamRequest(r, 128)
			if err == io.EOF {
				return
			}
			if errors.Is(err, ErrBadStreamRequest) {
				continue
			}
			if err != nil {
				if !errors.Is(err, ErrMalformed) {
					t.Fatalf("unexpected error class: %v", err)
				}
				return
			}
			if len(q.Body) > 128 {
				t.Fatalf("body of %d bytes over the limit", len(q.Body))
			}
			again, err := ReadStreamRequest(bufio.NewReader(bytes.NewReader(AppendStreamRequest(nil, q))), 128)
			if err != nil || !reflect.DeepEqual(again, q) {
				t.Fatalf("re-encoded %+v read back as %+v, %v", q, again, err)
			}
		}
	})
}
