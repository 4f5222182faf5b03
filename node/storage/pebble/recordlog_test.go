package pebble

import (
	"bytes"
	"encoding/binary"
	"errors"
	"math/rand/v2"
	"testing"

	pebbledb "github.com/cockroachdb/pebble"
	"github.com/cockroachdb/pebble/record"

	"github.com/goblocks/goblocks/node/storage"
)

// payloads returns n records of assorted sizes, some spanning blocks.
func payloads(n int, seed uint64) [][]byte {
	r := rand.New(rand.NewPCG(seed, 1))
	recs := make([][]byte, n)
	for i := range recs {
		recs[i] = make([]byte, 100+r.IntN(9000))
		for j := range recs[i] {
			recs[i][j] = byte(r.Uint32())
		}
	}
	return recs
}

// walBytes is what pebble's WAL writer writes for recs as log num,
// including the EOF trailer it adds on close.
func walBytes(t *testing.T, num uint32, recs [][]byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	w := record.NewLogWriter(&buf, pebbledb.FileNum(num), record.LogWriterConfig{})
	for _, r := range recs {
		if _, err := w.WriteRecord(r); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// manifestBytes is what pebble's MANIFEST writer writes for recs.
func manifestBytes(t *testing.T, recs [][]byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	w := record.NewWriter(&buf)
	for _, r := range recs {
		if _, err := w.WriteRecord(r); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func check(b []byte, f logFormat) error {
	return checkRecordLog(bytes.NewReader(b), int64(len(b)), f)
}

func flipped(b []byte, off int) []byte {
	b = bytes.Clone(b)
	b[off] ^= 0x10
	return b
}

func TestCheckRecordLog(t *testing.T) {
	wal := logFormat{recyclable: true, logNum: 9}
	recs := payloads(40, 1)
	clean := walBytes(t, 9, recs)
	middle := bytes.Index(clean, recs[20][50:90]) // inside record 20's payload
	last := bytes.Index(clean, recs[39][50:90])
	// A recycled file: log 9 written over an older, longer log 7.
	old := walBytes(t, 7, payloads(80, 2))
	recycled := append(bytes.Clone(clean), old[len(clean):]...)
	// A crash tore log 9's last record; log 7's chunks follow it.
	tornRecycled := append(bytes.Clone(clean[:last]), old[last:]...)
	zeroedTail := append(bytes.Clone(clean[:last]), make([]byte, len(clean)-last)...)

	manifest := logFormat{}
	mclean := manifestBytes(t, recs)
	mmiddle := bytes.Index(mclean, recs[20][50:90])

	for _, tc := range []struct {
		name    string
		b       []byte
		f       logFormat
		corrupt bool
	}{
		{"wal/clean", clean, wal, false},
		{"wal/flip in the middle", flipped(clean, middle), wal, true},
		{"wal/flip in the last record", flipped(clean, last), wal, false},
		{"wal/truncated in the last record", clean[:last], wal, false},
		{"wal/zeroed tail", zeroedTail, wal, false},
		{"wal/recycled", recycled, wal, false},
		{"wal/recycled, torn tail", tornRecycled, wal, false},
		{"wal/recycled, flip in the middle", flipped(recycled, middle), wal, true},
		{"wal/wrong log number", clean, logFormat{recyclable: true, logNum: 8}, false},
		{"manifest/clean", mclean, manifest, false},
		{"manifest/flip in the middle", flipped(mclean, mmiddle), manifest, true},
		{"manifest/truncated", mclean[:mmiddle], manifest, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := check(tc.b, tc.f)
			if got := errors.Is(err, storage.ErrCorrupt); got != tc.corrupt || (err != nil && !got) {
				t.Fatalf("checkRecordLog = %v, want corrupt %v", err, tc.corrupt)
			}
		})
	}
}

// TestCheckRecordLogFlips flips bytes of a WAL in turn (every chunk
// header byte, and every 7th payload byte to keep it quick): wherever
// pebble's replay would lose a record that the file still holds intact,
// the check must say corrupt, and it must never say so otherwise. The
// only misses allowed are flips in a chunk's type or log number, which
// make it look like a recycled log's chunk.
func TestCheckRecordLogFlips(t *testing.T) {
	recs := payloads(12, 3) // ~60 KiB: two blocks and a bit
	clean := walBytes(t, 9, recs)
	f := logFormat{recyclable: true, logNum: 9}
	headers, identity := chunkHeaders(clean, f)
	for off := range clean {
		if off%7 != 0 && !headers[off] {
			continue
		}
		b := flipped(clean, off)
		replayed := replayCount(t, b)
		lost := replayed < len(recs)
		err := check(b, f)
		corrupt := errors.Is(err, storage.ErrCorrupt)
		switch {
		case err != nil && !corrupt:
			t.Fatalf("flip at %d: %v", off, err)
		case corrupt && !lost:
			t.Fatalf("flip at %d: corrupt, but pebble replays all %d records", off, len(recs))
		case lost && !corrupt && replayed < len(recs)-1 && !identity[off]:
			t.Fatalf("flip at %d: pebble replays %d of %d records, check says intact", off, replayed, len(recs))
		}
	}
}

// replayCount is how many records pebble's replay of the last WAL reads.
func replayCount(t *testing.T, b []byte) int {
	rr := record.NewReader(bytes.NewReader(b), 9)
	n := 0
	for {
		r, err := rr.Next()
		if err == nil {
			_, err = bytes.NewBuffer(nil).ReadFrom(r)
		}
		if err != nil {
			return n
		}
		n++
	}
}

// chunkHeaders marks the bytes of b that are chunk headers, and among
// them those that hold a chunk's type or log number.
func chunkHeaders(b []byte, f logFormat) (header, identity map[int]bool) {
	header, identity = make(map[int]bool), make(map[int]bool)
	for i := 0; i+recyclableHeaderLen <= len(b); {
		if rest := logBlockSize - i%logBlockSize; rest < recyclableHeaderLen {
			i += rest
			continue
		}
		for j := range recyclableHeaderLen {
			header[i+j] = true
			identity[i+j] = j >= 6
		}
		if binary.LittleEndian.Uint32(b[i+7:]) != f.logNum {
			break // the EOF trailer
		}
		i += recyclableHeaderLen + int(binary.LittleEndian.Uint16(b[i+4:]))
	}
	return header, identity
}
