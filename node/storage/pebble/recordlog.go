package pebble

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"

	pebbledb "github.com/cockroachdb/pebble"
	"github.com/cockroachdb/pebble/record"

	"github.com/goblocks/goblocks/node/storage"
)

// Pebble v1.1.5 reads its WAL and its MANIFEST with record.Reader and
// treats the first record that fails its checksum as the end of the file
// (open.go:792 for the last WAL, version_set.go:232 for the MANIFEST).
// That is right for a torn tail left by a crash, but a flipped bit in the
// middle of the file silently drops every record after it: acknowledged
// writes in a WAL; in a MANIFEST, whole tables, which pebble then deletes
// as obsolete. checkRecordLog tells the two apart so Open can refuse such
// a store instead.
//
// The format (package record): the file is a sequence of 32 KiB blocks;
// chunks never straddle blocks. A chunk header is checksum u32, length
// u16, type u8 ("legacy", 7 bytes, used by the MANIFEST), followed in a
// WAL by the log number u32 ("recyclable", 11 bytes). The checksum is a
// masked CRC-32C of everything after the length: type, log number and
// payload. A recycled WAL keeps chunks of its previous log number past its
// new end; the log number tells them apart.
const (
	logBlockSize        = 32 << 10
	legacyHeaderLen     = 7
	recyclableHeaderLen = 11
	// Chunk types: full, first, middle, last; the recyclable ones follow.
	legacyFullType     = 1
	recyclableFullType = 5
)

// logFormat says which chunks belong to the log being checked.
type logFormat struct {
	recyclable bool   // a WAL; false for a MANIFEST
	logNum     uint32 // low 32 bits of the WAL's file number
}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// maskedCRC is pebble's internal/crc Value: CRC-32C rotated and offset,
// so a checksum of data that embeds checksums is not itself trivial.
func maskedCRC(b []byte) uint32 {
	c := crc32.Checksum(b, castagnoli)
	return (c>>15 | c<<17) + 0xa282ead8
}

// recordStartAt reports whether an intact chunk of this log that starts a
// record (a full or first chunk) begins at block[i:].
func (f logFormat) recordStartAt(block []byte, i int) bool {
	hdr, full := legacyHeaderLen, legacyFullType
	if f.recyclable {
		hdr, full = recyclableHeaderLen, recyclableFullType
	}
	if i+hdr > len(block) {
		return false
	}
	h := block[i:]
	if typ := int(h[6]); typ != full && typ != full+1 { // full or first
		return false
	}
	if f.recyclable && binary.LittleEndian.Uint32(h[7:11]) != f.logNum {
		return false
	}
	end := i + hdr + int(binary.LittleEndian.Uint16(h[4:6]))
	return end <= len(block) && maskedCRC(block[i+6:end]) == binary.LittleEndian.Uint32(h[0:4])
}

// checkRecordLog returns an error wrapping storage.ErrCorrupt if pebble
// would stop reading the log in file (of the given size) before an intact
// record of that log: damage in the middle, not a torn tail. A torn tail
// ends in zeros, a partial record or a recycled log's old chunks, and no
// whole record of this log follows it.
//
// A flip that lands in a record's type or log number makes that record
// look foreign rather than damaged and may go unnoticed, as it does for
// pebble; any other flip before the last record is caught.
func checkRecordLog(file io.ReaderAt, size int64, f logFormat) error {
	stop, err := replayStop(io.NewSectionReader(file, 0, size), f)
	if err != nil || stop < 0 {
		return err
	}
	next, err := firstRecordAfter(file, size, stop, f)
	if err != nil || next < 0 {
		return err
	}
	return fmt.Errorf("log replay would stop at offset %d, dropping the intact record at offset %d and any after it: %w",
		stop, next, storage.ErrCorrupt)
}

// replayStop reads the log as pebble replays it and returns the offset of
// the record pebble would stop at, or -1 if it reads to a clean end.
func replayStop(r io.Reader, f logFormat) (int64, error) {
	rr := record.NewReader(r, pebbledb.FileNum(f.logNum))
	for {
		off := rr.Offset()
		rec, err := rr.Next()
		if err == nil {
			_, err = io.Copy(io.Discard, rec)
		}
		switch {
		case err == nil:
		case errors.Is(err, io.EOF):
			return -1, nil
		case record.IsInvalidRecord(err):
			return off, nil
		default:
			return -1, err
		}
	}
}

// firstRecordAfter returns the offset of the first intact record start of
// the log after pos, or -1. Every offset is tried: the chunk lengths near
// the damage cannot be trusted to find the next chunk.
func firstRecordAfter(file io.ReaderAt, size, pos int64, f logFormat) (int64, error) {
	buf := make([]byte, logBlockSize)
	for start := pos - pos%logBlockSize; start < size; start += logBlockSize {
		block := buf[:min(int64(logBlockSize), size-start)]
		if _, err := file.ReadAt(block, start); err != nil && !errors.Is(err, io.EOF) {
			return -1, err
		}
		i := 0
		if start <= pos {
			i = int(pos-start) + 1
		}
		for ; i < len(block); i++ {
			if f.recordStartAt(block, i) {
				return start + int64(i), nil
			}
		}
	}
	return -1, nil
}
