package wire

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/goblocks/goblocks/node/hlc"
	"github.com/goblocks/goblocks/node/storage"
)

func sampleRecords() []struct {
	id  string
	rec storage.Record
} {
	return []struct {
		id  string
		rec storage.Record
	}{
		{"a", storage.NewRecord(bytes.Repeat([]byte{7}, 4096), hlc.Version{Timestamp: 1 << 20, Node: "n1"})},
		{"tomb-1", storage.NewTombstone(hlc.Version{Timestamp: 99, Node: "node-2"})},
		{"small.x~y", storage.NewRecord([]byte("hello"), hlc.Version{Timestamp: 5, Node: "z"})},
	}
}

func TestFrameRoundTrip(t *testing.T) {
	var buf bytes.Buffer
	enc := NewEncoder(&buf)
	for _, s := range sampleRecords() {
		if err := enc.Encode(s.id, s.rec); err != nil {
			t.Fatal(err)
		}
	}
	if err := enc.Flush(); err != nil {
		t.Fatal(err)
	}
	dec := NewDecoder(&buf, 4096)
	for _, want := range sampleRecords() {
		id, rec, err := dec.Decode()
		if err != nil {
			t.Fatal(err)
		}
		if id != want.id || rec.Version != want.rec.Version || rec.Tombstone != want.rec.Tombstone ||
			rec.Checksum != want.rec.Checksum || !bytes.Equal(rec.Data, want.rec.Data) {
			t.Fatalf("decoded %q %+v, want %q %+v", id, rec.Meta(), want.id, want.rec.Meta())
		}
	}
	if _, _, err := dec.Decode(); err != io.EOF {
		t.Fatalf("end of stream: %v, want io.EOF", err)
	}
}

func TestFrameRejects(t *testing.T) {
	good := func() []byte {
		var buf bytes.Buffer
		enc := NewEncoder(&buf)
		_ = enc.Encode("id", storage.NewRecord([]byte("abcd"), hlc.Version{Timestamp: 3, Node: "n"}))
		_ = enc.Flush()
		return buf.Bytes()
	}
	tests := []struct {
		name    string
		mutate  func([]byte) []byte
		maxSize int
		corrupt bool
	}{
		{"bad magic", func(b []byte) []byte { b[0] = 1; return b }, 4096, false},
		{"unknown flag", func(b []byte) []byte { b[1] = 4; return b }, 4096, false},
		{"truncated payload", func(b []byte) []byte { return b[:len(b)-1] }, 4096, false},
		{"payload over limit", func(b []byte) []byte { return b }, 3, false},
		{"flipped payload bit", func(b []byte) []byte { b[len(b)-1] ^= 1; return b }, 4096, true},
		{"empty id", func(b []byte) []byte { return append([]byte{frameMagic, 0, 0}, b[5:]...) }, 4096, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := NewDecoder(bytes.NewReader(tc.mutate(good())), tc.maxSize).Decode()
			if err == nil {
				t.Fatal("accepted")
			}
			if got := errors.Is(err, storage.ErrCorrupt); got != tc.corrupt {
				t.Fatalf("corrupt = %v (%v), want %v", got, err, tc.corrupt)
			}
		})
	}
}

func TestRecordHeadersRoundTrip(t *testing.T) {
	stale := time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC)
	for _, m := range []storage.Meta{
		{Version: hlc.Version{Timestamp: 77, Node: "a"}, Checksum: 0xdeadbeef},
		{Version: hlc.Version{Timestamp: 78, Node: "b"}, Tombstone: true},
		{Version: hlc.Version{Timestamp: 79, Node: "c"}, Checksum: 1, StaleSince: stale},
	} {
		h := http.Header{}
		SetRecordHeaders(h, m)
		got, err := ParseRecordHeaders(h)
		if err != nil {
			t.Fatal(err)
		}
		if got.Version != m.Version || got.Checksum != m.Checksum || got.Tombstone != m.Tombstone || !got.StaleSince.Equal(m.StaleSince) {
			t.Fatalf("round trip %+v -> %+v", m, got)
		}
	}
}

func TestRecordHeadersRejects(t *testing.T) {
	tests := map[string]map[string]string{
		"no version":    {HeaderChecksum: "1"},
		"bad checksum":  {HeaderVersion: "1-a", HeaderChecksum: "xyz"},
		"huge checksum": {HeaderVersion: "1-a", HeaderChecksum: "1ffffffff"},
		"bad state":     {HeaderVersion: "1-a", HeaderChecksum: "1", HeaderState: "weird"},
		"stale no time": {HeaderVersion: "1-a", HeaderChecksum: "1", HeaderState: StateStale},
	}
	for name, hdr := range tests {
		h := http.Header{}
		for k, v := range hdr {
			h.Set(k, v)
		}
		if _, err := ParseRecordHeaders(h); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: err = %v, want ErrMalformed", name, err)
		}
	}
}

func TestApplyResultRoundTrip(t *testing.T) {
	in := []ApplyResult{
		{Applied: true},
		{Held: hlc.Version{Timestamp: 1 << 60, Node: "node-7"}},
		{},
		{Held: hlc.Version{Timestamp: 42, Node: strings.Repeat("n", 255)}},
	}
	var b []byte
	for _, r := range in {
		b = AppendApplyResult(b, r)
	}
	br := bufio.NewReader(bytes.NewReader(b))
	for i, want := range in {
		got, err := ReadApplyResult(br)
		if err != nil || got != want {
			t.Fatalf("result %d: got %+v, %v; want %+v", i, got, err, want)
		}
	}
	if _, err := ReadApplyResult(br); !errors.Is(err, ErrMalformed) {
		t.Fatalf("past the end: %v", err)
	}
	for _, bad := range [][]byte{{'x'}, {ResultNotApplied, 1, 2}, {ResultNotApplied, 0, 0, 0, 0, 0, 0, 0, 1, 5, 'a'}} {
		if _, err := ReadApplyResult(bufio.NewReader(bytes.NewReader(bad))); !errors.Is(err, ErrMalformed) {
			t.Errorf("%q: %v, want ErrMalformed", bad, err)
		}
	}
}

func TestMetaRoundTrip(t *testing.T) {
	in := []storage.Meta{
		{Version: hlc.Version{Timestamp: 1 << 60, Node: "node-7"}, Checksum: 0xdeadbeef, Size: 4096},
		{Version: hlc.Version{Timestamp: 3, Node: "n"}, Tombstone: true},
		{Version: hlc.Version{Timestamp: 42, Node: strings.Repeat("n", 255)}, Size: 1, StaleSince: time.Unix(1700000000, 123)},
	}
	var b []byte
	for _, m := range in {
		b = AppendMeta(b, m)
	}
	br := bufio.NewReader(bytes.NewReader(b))
	for i, want := range in {
		got, err := ReadMeta(br)
		if err != nil || got.Version != want.Version || got.Checksum != want.Checksum || got.Size != want.Size ||
			got.Tombstone != want.Tombstone || !got.StaleSince.Equal(want.StaleSince) {
			t.Fatalf("meta %d: got %+v, %v; want %+v", i, got, err, want)
		}
	}
	if _, err := ReadMeta(br); !errors.Is(err, ErrMalformed) {
		t.Fatalf("past the end: %v", err)
	}
	for name, bad := range map[string][]byte{
		"unknown flag":   {0x80, 0, 0, 0, 0, 0, 0, 0, 1, 1, 'a', 0, 0, 0, 0, 0, 0, 0, 0},
		"zero version":   {0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 'a', 0, 0, 0, 0, 0, 0, 0, 0},
		"no node":        {0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0},
		"cut in node":    {0, 0, 0, 0, 0, 0, 0, 0, 1, 5, 'a'},
		"cut stale time": {metaStale, 0, 0, 0, 0, 0, 0, 0, 1, 1, 'a', 0, 0, 0, 0, 0, 0, 0, 0, 1, 2},
	} {
		if _, err := ReadMeta(bufio.NewReader(bytes.NewReader(bad))); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: %v, want ErrMalformed", name, err)
		}
	}
}
