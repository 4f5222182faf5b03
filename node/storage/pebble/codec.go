package pebble

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/goblocks/goblocks/node/hlc"
	"github.com/goblocks/goblocks/node/storage"
)

// Key families. Every block has a meta key (its metadata) and, unless it
// is a tombstone, a data key (its payload), written together in one batch.
// The families are separate key ranges so that scans, version probes and
// the count at open read only the small metadata values and never page
// payloads in. Where the keys go within a family is the layout (layout.go).

// metaFormatV1 is the first byte of every encoded metadata value. A future
// layout gets a new number so old and new values can coexist on disk.
const metaFormatV1 = 1

// flagTombstone is the only defined flag. Unknown flags are rejected rather
// than ignored: a value written by a newer binary may mean something this
// one cannot honour.
const flagTombstone = 1 << 0

// Layout of a v1 metadata value (integers big-endian):
//
//	[0]      format version (metaFormatV1)
//	[1]      flags (flagTombstone)
//	[2:10]   HLC timestamp, u64
//	[10]     coordinator name length n (<= hlc.MaxNodeLen)
//	[11:11+n] coordinator name
//	then     stale-since, unix nanoseconds, i64 (0 = owned)
//	         CRC32C of the payload, u32
//	         payload size, u32
const metaFixedLen = 1 + 1 + 8 + 1 + 8 + 4 + 4

// errMeta is wrapped by every decode failure; callers turn it into
// storage.ErrCorrupt with the block id for context.
var errMeta = errors.New("pebble: malformed metadata")

// encodeMeta appends the v1 encoding of m to dst. It fails only for inputs
// the format cannot represent, which Apply rejects before staging a write.
func encodeMeta(dst []byte, m storage.Meta) ([]byte, error) {
	if len(m.Version.Node) > hlc.MaxNodeLen {
		return dst, fmt.Errorf("pebble: version node name is %d bytes, limit %d", len(m.Version.Node), hlc.MaxNodeLen)
	}
	if m.Size < 0 || uint64(m.Size) > 1<<32-1 {
		return dst, fmt.Errorf("pebble: payload size %d out of range", m.Size)
	}
	var flags byte
	if m.Tombstone {
		flags |= flagTombstone
	}
	dst = append(dst, metaFormatV1, flags)
	dst = binary.BigEndian.AppendUint64(dst, uint64(m.Version.Timestamp))
	dst = append(dst, byte(len(m.Version.Node)))
	dst = append(dst, m.Version.Node...)
	dst = binary.BigEndian.AppendUint64(dst, uint64(staleNanos(m.StaleSince)))
	dst = binary.BigEndian.AppendUint32(dst, m.Checksum)
	dst = binary.BigEndian.AppendUint32(dst, uint32(m.Size))
	return dst, nil
}

// decodeMeta parses a value written by encodeMeta. It accepts only
// canonical encodings (exact length, known flags, a tombstone with neither
// size nor checksum), so decode followed by encode reproduces the input.
func decodeMeta(b []byte) (storage.Meta, error) {
	if len(b) < metaFixedLen {
		return storage.Meta{}, fmt.Errorf("%w: %d bytes", errMeta, len(b))
	}
	if b[0] != metaFormatV1 {
		return storage.Meta{}, fmt.Errorf("%w: unknown format %d", errMeta, b[0])
	}
	flags := b[1]
	if flags&^flagTombstone != 0 {
		return storage.Meta{}, fmt.Errorf("%w: unknown flags %#x", errMeta, flags)
	}
	n := int(b[10])
	if len(b) != metaFixedLen+n {
		return storage.Meta{}, fmt.Errorf("%w: %d bytes for a %d-byte node name", errMeta, len(b), n)
	}
	rest := b[11+n:]
	m := storage.Meta{
		Version: hlc.Version{
			Timestamp: hlc.Timestamp(binary.BigEndian.Uint64(b[2:10])),
			Node:      string(b[11 : 11+n]),
		},
		StaleSince: staleTime(int64(binary.BigEndian.Uint64(rest[0:8]))),
		Checksum:   binary.BigEndian.Uint32(rest[8:12]),
		Size:       int(binary.BigEndian.Uint32(rest[12:16])),
		Tombstone:  flags&flagTombstone != 0,
	}
	if m.Tombstone && (m.Size != 0 || m.Checksum != storage.Checksum(nil)) {
		return storage.Meta{}, fmt.Errorf("%w: tombstone with a payload", errMeta)
	}
	return m, nil
}

// staleNanos maps the zero time (owned) to 0. A real instant that happens
// to be the Unix epoch is nudged by a nanosecond so it still reads as stale.
func staleNanos(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	if n := t.UnixNano(); n != 0 {
		return n
	}
	return 1
}

func staleTime(n int64) time.Time {
	if n == 0 {
		return time.Time{}
	}
	return time.Unix(0, n).UTC()
}
