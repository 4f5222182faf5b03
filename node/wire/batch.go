package wire

import (
	"bufio"
	"fmt"
	"io"
	"strings"

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

// Result bytes of a batch apply.
const (
	ResultNotApplied byte = '0' // the receiver holds this version or newer
	ResultApplied    byte = '1'
)

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
