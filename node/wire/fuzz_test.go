package wire

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/goblocks/goblocks/node/storage"
)

// FuzzDecodeFrames feeds arbitrary streams to the batch decoder: it must
// never panic, never return a payload over the limit, and every record it
// accepts must re-encode to the bytes it was decoded from.
func FuzzDecodeFrames(f *testing.F) {
	for _, s := range sampleRecords() {
		var buf bytes.Buffer
		enc := NewEncoder(&buf)
		_ = enc.Encode(s.id, s.rec)
		_ = enc.Flush()
		f.Add(buf.Bytes())
	}
	f.Add([]byte{frameMagic})
	f.Fuzz(func(t *testing.T, data []byte) {
		dec := NewDecoder(bytes.NewReader(data), 4096)
		var consumed int
		for {
			id, rec, err := dec.Decode()
			if err == io.EOF {
				return
			}
			if err != nil {
				if !errors.Is(err, ErrMalformed) && !errors.Is(err, storage.ErrCorrupt) {
					t.Fatalf("unexpected error class: %v", err)
				}
				return
			}
			if len(rec.Data) > 4096 {
				t.Fatalf("payload %d over limit", len(rec.Data))
			}
			var buf bytes.Buffer
			enc := NewEncoder(&buf)
			if err := enc.Encode(id, rec); err != nil {
				t.Fatalf("re-encode: %v", err)
			}
			_ = enc.Flush()
			if !bytes.Equal(buf.Bytes(), data[consumed:consumed+buf.Len()]) {
				t.Fatalf("re-encoded frame differs")
			}
			consumed += buf.Len()
		}
	})
}

// FuzzParseRecordHeaders: header parsing never panics and accepted values
// survive a round trip.
func FuzzParseRecordHeaders(f *testing.F) {
	f.Add("12-node", "deadbeef", "owned", "")
	f.Add("1-a", "0", "stale", "2026-01-02T03:04:05Z")
	f.Add("9-x", "1", "tombstone", "")
	f.Fuzz(func(t *testing.T, version, sum, state, since string) {
		h := http.Header{}
		h.Set(HeaderVersion, version)
		h.Set(HeaderChecksum, sum)
		h.Set(HeaderState, state)
		h.Set(HeaderStaleSince, since)
		m, err := ParseRecordHeaders(h)
		if err != nil {
			return
		}
		h2 := http.Header{}
		SetRecordHeaders(h2, m)
		m2, err := ParseRecordHeaders(h2)
		if err != nil || m2.Version != m.Version || m2.Checksum != m.Checksum || m2.Tombstone != m.Tombstone || !m2.StaleSince.Equal(m.StaleSince) {
			t.Fatalf("round trip %+v -> %+v (%v)", m, m2, err)
		}
	})
}

// FuzzReadMeta: a peer's metadata reply never panics the reader, and
// every meta it accepts re-encodes to the bytes it was read from.
func FuzzReadMeta(f *testing.F) {
	for _, s := range sampleRecords() {
		f.Add(AppendMeta(nil, s.rec.Meta()))
	}
	f.Add(AppendMeta(nil, storage.Meta{Version: sampleRecords()[0].rec.Version, StaleSince: time.Unix(1700000000, 5)}))
	f.Add([]byte{metaStale})
	f.Fuzz(func(t *testing.T, data []byte) {
		br := bufio.NewReader(bytes.NewReader(data))
		m, err := ReadMeta(br)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("unexpected error class: %v", err)
			}
			return
		}
		if m.Version.Timestamp == 0 || m.Version.Node == "" {
			t.Fatalf("accepted a zero version: %+v", m)
		}
		re := AppendMeta(nil, m)
		if !bytes.Equal(re, data[:len(re)]) {
			t.Fatalf("re-encoded meta differs: %x vs %x", re, data[:len(re)])
		}
	})
}
