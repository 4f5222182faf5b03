package wire

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/goblocks/goblocks/node/hlc"
	"github.com/goblocks/goblocks/node/storage"
)

// Batch endpoints. A batch apply carries frames and is answered by one
// result byte per frame; a batch fetch carries newline-separated ids and is
// answered, per id in order, by a status byte followed by a frame when the
// status is FetchFound.
const (
	PathBatchApply = "/internal/batch/apply"
	PathBatchFetch = "/internal/batch/fetch"
)

// MaxBatch is the most records one batch request may carry. It bounds what
// a receiver buffers: MaxBatch blocks plus headers.
const MaxBatch = 256

// Result bytes of a batch apply. ResultNotApplied is followed by the
// version the receiver holds (u64 timestamp, u8 length, node name; the
// zero version when it holds none it can read): coordinators use it to
// re-stamp a write that lost to a newer version above that version.
const (
	ResultNotApplied byte = '0' // the receiver holds this version or newer
	ResultApplied    byte = '1'
)

// ApplyResult is one record's outcome in a batch apply.
type ApplyResult struct {
	Applied bool
	// Held is the version the receiver holds when it did not apply the
	// record (equal to or newer than the record's).
	Held hlc.Version
}

// AppendApplyResult appends r's encoding to b.
func AppendApplyResult(b []byte, r ApplyResult) []byte {
	if r.Applied {
		return append(b, ResultApplied)
	}
	return appendVersion(append(b, ResultNotApplied), r.Held)
}

// appendVersion appends v as u64 timestamp, u8 length, node name (cut to
// hlc.MaxNodeLen).
func appendVersion(b []byte, v hlc.Version) []byte {
	node := v.Node
	if len(node) > hlc.MaxNodeLen {
		node = node[:hlc.MaxNodeLen]
	}
	b = binary.BigEndian.AppendUint64(b, uint64(v.Timestamp))
	b = append(b, byte(len(node)))
	return append(b, node...)
}

// readVersion reads what appendVersion wrote.
func readVersion(r *bufio.Reader) (hlc.Version, error) {
	var hdr [9]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return hlc.Version{}, truncated(err)
	}
	node := make([]byte, hdr[8])
	if _, err := io.ReadFull(r, node); err != nil {
		return hlc.Version{}, truncated(err)
	}
	return hlc.Version{Timestamp: hlc.Timestamp(binary.BigEndian.Uint64(hdr[:8])), Node: string(node)}, nil
}

// ReadApplyResult reads one result.
func ReadApplyResult(r *bufio.Reader) (ApplyResult, error) {
	tag, err := r.ReadByte()
	if err != nil {
		return ApplyResult{}, truncated(err)
	}
	switch tag {
	case ResultApplied:
		return ApplyResult{Applied: true}, nil
	case ResultNotApplied:
	default:
		return ApplyResult{}, fmt.Errorf("%w: apply result %#x", ErrMalformed, tag)
	}
	held, err := readVersion(r)
	return ApplyResult{Held: held}, err
}

// Status bytes of a batch fetch.
const (
	FetchAbsent  byte = 'a'
	FetchFound   byte = 'f'
	FetchCorrupt byte = 'c'
)

// MaxFrameOverhead bounds a frame's bytes beyond its payload.
const MaxFrameOverhead = 3 + MaxIDLen + 8 + 1 + 255 + 8

// MaxBatchBody is the largest batch-apply body for a block size.
func MaxBatchBody(blockSize int) int64 {
	return int64(MaxBatch) * int64(blockSize+MaxFrameOverhead)
}

// EncodeIDs writes ids for a batch fetch.
func EncodeIDs(w io.Writer, ids []string) error {
	_, err := io.WriteString(w, strings.Join(ids, "\n"))
	return err
}

// DecodeIDs reads at most MaxBatch ids, each checked by valid.
func DecodeIDs(r io.Reader, valid func(string) error) ([]string, error) {
	sc := bufio.NewScanner(io.LimitReader(r, int64(MaxBatch)*(MaxIDLen+1)))
	sc.Buffer(make([]byte, 0, 4096), MaxIDLen+1)
	var ids []string
	for sc.Scan() {
		if len(ids) == MaxBatch {
			return nil, fmt.Errorf("%w: more than %d ids", ErrMalformed, MaxBatch)
		}
		if err := valid(sc.Text()); err != nil {
			return nil, err
		}
		ids = append(ids, sc.Text())
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	return ids, nil
}

// FetchReply is one id's answer in a batch fetch.
type FetchReply struct {
	Status byte
	Record storage.Record
}

// PathBatchMeta answers, per id in order, a fetch status byte followed,
// for FetchFound, by the record's metadata (AppendMeta): what a
// coordinator asks every owner before a write, without the payload.
const PathBatchMeta = "/internal/batch/meta"

// PathBatchDigest is PathBatchMeta with each payload read and checked
// against its checksum first (FetchCorrupt when it fails): the digest
// replies of quorum reads.
const PathBatchDigest = "/internal/batch/digest"

// MetaReply answers one id of a batch meta request: Meta is set when
// Status is FetchFound.
type MetaReply struct {
	Status byte
	Meta   storage.Meta
}

const (
	metaTombstone byte = 1 << iota
	metaStale
)

// AppendMeta appends m's encoding to b:
//
//	flags   u8 (bit 0: tombstone, bit 1: stale)
//	ts      u64, nodeLen u8, node
//	crc     u32
//	size    u32
//	stale   i64 (unix nanoseconds; only with the stale flag)
func AppendMeta(b []byte, m storage.Meta) []byte {
	var flags byte
	if m.Tombstone {
		flags |= metaTombstone
	}
	if !m.StaleSince.IsZero() {
		flags |= metaStale
	}
	b = appendVersion(append(b, flags), m.Version)
	b = binary.BigEndian.AppendUint32(b, m.Checksum)
	b = binary.BigEndian.AppendUint32(b, uint32(m.Size))
	if flags&metaStale != 0 {
		b = binary.BigEndian.AppendUint64(b, uint64(m.StaleSince.UnixNano()))
	}
	return b
}

// ReadMeta reads what AppendMeta wrote.
func ReadMeta(r *bufio.Reader) (storage.Meta, error) {
	var m storage.Meta
	flags, err := r.ReadByte()
	if err != nil {
		return m, truncated(err)
	}
	if flags&^(metaTombstone|metaStale) != 0 {
		return m, fmt.Errorf("%w: unknown meta flags %#x", ErrMalformed, flags)
	}
	if m.Version, err = readVersion(r); err != nil {
		return m, err
	}
	if m.Version.Timestamp == 0 || m.Version.Node == "" {
		return m, fmt.Errorf("%w: zero version", ErrMalformed)
	}
	var fixed [8]byte
	if _, err := io.ReadFull(r, fixed[:8]); err != nil {
		return m, truncated(err)
	}
	m.Checksum = binary.BigEndian.Uint32(fixed[:4])
	m.Size = int(binary.BigEndian.Uint32(fixed[4:8]))
	m.Tombstone = flags&metaTombstone != 0
	if flags&metaStale != 0 {
		if _, err := io.ReadFull(r, fixed[:8]); err != nil {
			return m, truncated(err)
		}
		m.StaleSince = time.Unix(0, int64(binary.BigEndian.Uint64(fixed[:8])))
	}
	return m, nil
}
