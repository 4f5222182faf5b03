package wire

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"github.com/goblocks/goblocks/node/hlc"
	"github.com/goblocks/goblocks/node/storage"
)

// A batch stream is a sequence of frames, one record each:
//
//	magic   u8  = frameMagic
//	flags   u8  (bit 0: tombstone)
//	idLen   u8, id
//	ts      u64 (HLC timestamp)
//	nodeLen u8, node
//	crc     u32 (CRC32C of payload)
//	size    u32, payload
//
// All integers are big-endian. Frames are self-delimiting so a receiver
// applies records as they arrive and never buffers a whole stream; the
// payload size is bounded by the receiver's block size, so a hostile stream
// cannot make it allocate more than one block per frame.
const frameMagic = 0xB7

const flagTombstone = 1

// MaxIDLen is the longest block id the format (and the API) accepts.
const MaxIDLen = 255

// Encoder writes frames to a buffered writer.
type Encoder struct {
	w   *bufio.Writer
	hdr []byte
}

// NewEncoder returns an encoder writing to w. Call Flush when done.
func NewEncoder(w io.Writer) *Encoder {
	return &Encoder{w: bufio.NewWriterSize(w, 64<<10), hdr: make([]byte, 0, 600)}
}

// Encode writes one record. Records with ids or node names longer than 255
// bytes are refused.
func (e *Encoder) Encode(id string, rec storage.Record) error {
	h, err := appendFrameHeader(e.hdr[:0], id, rec)
	if err != nil {
		return err
	}
	if _, err := e.w.Write(h); err != nil {
		return err
	}
	_, err = e.w.Write(rec.Data)
	return err
}

// AppendFrame appends the frame of one record to b, as Encode writes it.
func AppendFrame(b []byte, id string, rec storage.Record) ([]byte, error) {
	b, err := appendFrameHeader(b, id, rec)
	return append(b, rec.Data...), err
}

func appendFrameHeader(h []byte, id string, rec storage.Record) ([]byte, error) {
	if len(id) == 0 || len(id) > MaxIDLen || len(rec.Version.Node) > hlc.MaxNodeLen {
		return h, fmt.Errorf("%w: id or node name length", ErrMalformed)
	}
	var flags byte
	if rec.Tombstone {
		flags |= flagTombstone
	}
	h = append(h, frameMagic, flags, byte(len(id)))
	h = append(h, id...)
	h = binary.BigEndian.AppendUint64(h, uint64(rec.Version.Timestamp))
	h = append(h, byte(len(rec.Version.Node)))
	h = append(h, rec.Version.Node...)
	h = binary.BigEndian.AppendUint32(h, rec.Checksum)
	h = binary.BigEndian.AppendUint32(h, uint32(len(rec.Data)))
	return h, nil
}

// Flush writes buffered frames through.
func (e *Encoder) Flush() error { return e.w.Flush() }

// Decoder reads frames.
type Decoder struct {
	r       *bufio.Reader
	maxSize int
	buf     [255]byte
}

// NewDecoder reads frames from r, refusing payloads larger than maxSize.
// A *bufio.Reader is read as it is, so its other readers stay in step.
func NewDecoder(r io.Reader, maxSize int) *Decoder {
	br, ok := r.(*bufio.Reader)
	if !ok {
		br = bufio.NewReaderSize(r, 64<<10)
	}
	return &Decoder{r: br, maxSize: maxSize}
}

// Decode returns the next record; io.EOF at a clean end of stream. The
// payload checksum is verified: a frame whose payload does not match its
// CRC is an error wrapping storage.ErrCorrupt.
func (d *Decoder) Decode() (string, storage.Record, error) {
	var rec storage.Record
	magic, err := d.r.ReadByte()
	if err != nil {
		return "", rec, err // io.EOF here is a clean end
	}
	if magic != frameMagic {
		return "", rec, fmt.Errorf("%w: bad magic %#x", ErrMalformed, magic)
	}
	flags, err := d.r.ReadByte()
	if err != nil {
		return "", rec, truncated(err)
	}
	if flags&^flagTombstone != 0 {
		return "", rec, fmt.Errorf("%w: unknown flags %#x", ErrMalformed, flags)
	}
	rec.Tombstone = flags&flagTombstone != 0
	id, err := d.shortString()
	if err != nil {
		return "", rec, err
	}
	if id == "" {
		return "", rec, fmt.Errorf("%w: empty id", ErrMalformed)
	}
	var fixed [8]byte
	if _, err := io.ReadFull(d.r, fixed[:8]); err != nil {
		return "", rec, truncated(err)
	}
	rec.Version.Timestamp = hlc.Timestamp(binary.BigEndian.Uint64(fixed[:8]))
	if rec.Version.Node, err = d.shortString(); err != nil {
		return "", rec, err
	}
	if rec.Version.Timestamp == 0 || rec.Version.Node == "" {
		return "", rec, fmt.Errorf("%w: zero version", ErrMalformed)
	}
	if _, err := io.ReadFull(d.r, fixed[:8]); err != nil {
		return "", rec, truncated(err)
	}
	rec.Checksum = binary.BigEndian.Uint32(fixed[:4])
	size := binary.BigEndian.Uint32(fixed[4:8])
	if int64(size) > int64(d.maxSize) || (rec.Tombstone && size != 0) {
		return "", rec, fmt.Errorf("%w: payload size %d", ErrMalformed, size)
	}
	if size > 0 {
		rec.Data = make([]byte, size)
		if _, err := io.ReadFull(d.r, rec.Data); err != nil {
			return "", rec, truncated(err)
		}
	}
	if storage.Checksum(rec.Data) != rec.Checksum {
		return "", rec, fmt.Errorf("%w: block %q checksum mismatch", storage.ErrCorrupt, id)
	}
	return id, rec, nil
}

func (d *Decoder) shortString() (string, error) {
	n, err := d.r.ReadByte()
	if err != nil {
		return "", truncated(err)
	}
	if _, err := io.ReadFull(d.r, d.buf[:n]); err != nil {
		return "", truncated(err)
	}
	return string(d.buf[:n]), nil
}

func truncated(err error) error {
	if errors.Is(err, io.EOF) {
		err = io.ErrUnexpectedEOF
	}
	return fmt.Errorf("%w: %w", ErrMalformed, err)
}
