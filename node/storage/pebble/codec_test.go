package pebble

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/goblocks/goblocks/node/hlc"
	"github.com/goblocks/goblocks/node/storage"
)

func codecCases() []storage.Meta {
	return []storage.Meta{
		{},
		{Version: hlc.Version{Timestamp: 1, Node: "n"}, Checksum: 0xdeadbeef, Size: 4096},
		{Version: hlc.Version{Timestamp: 1<<64 - 1, Node: strings.Repeat("z", hlc.MaxNodeLen)}, Checksum: 1, Size: 1<<32 - 1,
			StaleSince: time.Unix(1_700_000_000, 999).UTC()},
		{Version: hlc.Version{Timestamp: 42, Node: "node-a"}, Tombstone: true, StaleSince: time.Unix(-5, 0).UTC()},
		{Version: hlc.Version{Timestamp: 42, Node: ""}, Size: 0, Checksum: storage.Checksum(nil)},
	}
}

func TestMetaRoundTrip(t *testing.T) {
	for _, m := range codecCases() {
		b, err := encodeMeta(nil, m)
		if err != nil {
			t.Fatalf("encode %+v: %v", m, err)
		}
		got, err := decodeMeta(b)
		if err != nil {
			t.Fatalf("decode %x: %v", b, err)
		}
		if got.Version != m.Version || got.Checksum != m.Checksum || got.Size != m.Size ||
			got.Tombstone != m.Tombstone || !got.StaleSince.Equal(m.StaleSince) || got.StaleSince.IsZero() != m.StaleSince.IsZero() {
			t.Errorf("round trip %+v -> %+v", m, got)
		}
	}
}

func TestEpochStaleSinceStaysStale(t *testing.T) {
	b, err := encodeMeta(nil, storage.Meta{StaleSince: time.Unix(0, 0)})
	if err != nil {
		t.Fatal(err)
	}
	m, err := decodeMeta(b)
	if err != nil || m.StaleSince.IsZero() {
		t.Fatalf("stale at the epoch decoded as owned: %+v, %v", m, err)
	}
}

func TestDecodeMetaRejects(t *testing.T) {
	valid, _ := encodeMeta(nil, storage.Meta{Version: hlc.Version{Timestamp: 3, Node: "ab"}, Size: 4096, Checksum: 9})
	mutate := func(f func(b []byte) []byte) []byte { return f(bytes.Clone(valid)) }
	for name, b := range map[string][]byte{
		"empty":         nil,
		"truncated":     valid[:len(valid)-1],
		"trailing":      append(bytes.Clone(valid), 0),
		"format":        mutate(func(b []byte) []byte { b[0] = 2; return b }),
		"flags":         mutate(func(b []byte) []byte { b[1] = 2; return b }),
		"name length":   mutate(func(b []byte) []byte { b[10] = 200; return b }),
		"tombstone+len": mutate(func(b []byte) []byte { b[1] = flagTombstone; return b }),
	} {
		if _, err := decodeMeta(b); !errors.Is(err, errMeta) {
			t.Errorf("%s: decode err = %v, want errMeta", name, err)
		}
	}
}

func TestEncodeMetaRejects(t *testing.T) {
	if _, err := encodeMeta(nil, storage.Meta{Version: hlc.Version{Node: strings.Repeat("x", hlc.MaxNodeLen+1)}}); err == nil {
		t.Error("encoded a node name over the limit")
	}
	if _, err := encodeMeta(nil, storage.Meta{Size: -1}); err == nil {
		t.Error("encoded a negative size")
	}
}

// FuzzDecodeMeta: decoding never panics, and whatever decodes re-encodes to
// the same bytes (the decoder accepts only canonical encodings).
func FuzzDecodeMeta(f *testing.F) {
	for _, m := range codecCases() {
		b, err := encodeMeta(nil, m)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte{})
	f.Add([]byte{metaFormatV1})
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := decodeMeta(b)
		if err != nil {
			if !errors.Is(err, errMeta) {
				t.Fatalf("decode error %v does not wrap errMeta", err)
			}
			return
		}
		enc, err := encodeMeta(nil, m)
		if err != nil {
			t.Fatalf("re-encode of decoded %+v: %v", m, err)
		}
		if !bytes.Equal(enc, b) {
			t.Fatalf("re-encode differs:\n in %x\nout %x", b, enc)
		}
	})
}
