package wire

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
)

// A peer stream carries the batch requests of one node to another on a
// persistent connection, instead of one HTTP/1.1 request per batch. It
// starts as an HTTP request to PathStream with "Connection: Upgrade" and
// "Upgrade: StreamProtocol", which passes the same checks as every other
// internal request (cluster token, client certificate); after the 101
// answer both sides exchange frames:
//
//	request:  len u32 | id u32 | op u8 | flags u8 | traces u8 | trace... | body
//	response: len u32 | id u32 | status u16 | body
//
// len counts the bytes after it. A request's body is what the batch
// endpoint of its op takes (frames, or newline-separated ids), and a
// response's body is what that endpoint answers: the batch results when
// status is 200, the JSON error otherwise, with the HTTP status the
// endpoint would have used. Requests are pipelined and answered in any
// order; id pairs them. Each trace is the W3C trace context of a sampled
// call in the batch, as key/value pairs (count u8, then per pair keyLen
// u8, key, valueLen u16, value), so traced calls take the same path as
// the others.
const (
	PathStream     = "/internal/stream"
	StreamProtocol = "goblocks-stream/1"
)

// Stream ops: the batch endpoint a request goes to.
const (
	OpApply  byte = 1 // PathBatchApply
	OpFetch  byte = 2 // PathBatchFetch
	OpMeta   byte = 3 // PathBatchMeta
	OpDigest byte = 4 // PathBatchDigest
)

// StreamTransfer marks a request as a migration transfer (HeaderTransfer).
const StreamTransfer byte = 1

// TraceBlockID is a trace context key naming the block of the sampled
// call, so the peer's span can say which block it served.
const TraceBlockID = "goblocks-block-id"

// MaxStreamTraces bounds the trace contexts one request carries; further
// sampled calls in the batch go without (their spans still end at the
// coordinator).
const MaxStreamTraces = 4

const (
	maxTracePairs   = 6
	maxTraceValue   = 512
	requestHeadLen  = 4 + 1 + 1 + 1
	responseHeadLen = 4 + 2
)

// OpPath returns the batch endpoint of op, "" for an unknown op.
func OpPath(op byte) string {
	switch op {
	case OpApply:
		return PathBatchApply
	case OpFetch:
		return PathBatchFetch
	case OpMeta:
		return PathBatchMeta
	case OpDigest:
		return PathBatchDigest
	}
	return ""
}

// MaxStreamBody bounds a request or response body for a block size: the
// largest batch apply, or the answer to a batch fetch of as many blocks,
// each behind its status byte.
func MaxStreamBody(blockSize int) int {
	return int(MaxBatchBody(blockSize)) + MaxBatch
}

// ErrBadStreamRequest marks a request frame that was read whole but
// asks for something unknown or malformed (op, flags, trace contexts): the
// stream can go on, and the request is answered with an error. Any other
// error of ReadStreamRequest leaves the stream unreadable.
var ErrBadStreamRequest = fmt.Errorf("%w: bad stream request", ErrMalformed)

// StreamRequest is one request frame.
type StreamRequest struct {
	ID     uint32
	Op     byte
	Flags  byte
	Traces []map[string]string
	Body   []byte
}

// AppendStreamRequest appends q's encoding to b. Traces past
// MaxStreamTraces, and pairs too long for the format, are left out.
func AppendStreamRequest(b []byte, q StreamRequest) []byte {
	return append(AppendStreamRequestHead(b, q), q.Body...)
}

// AppendStreamRequestHead appends what precedes q.Body in q's encoding,
// so a writer can send a large body without copying it behind the head.
func AppendStreamRequestHead(b []byte, q StreamRequest) []byte {
	start := len(b)
	b = append(b, 0, 0, 0, 0)
	b = binary.BigEndian.AppendUint32(b, q.ID)
	b = append(b, q.Op, q.Flags)
	traces := q.Traces[:min(len(q.Traces), MaxStreamTraces)]
	b = append(b, byte(len(traces)))
	for _, t := range traces {
		n := 0
		at := len(b)
		b = append(b, 0)
		for k, v := range t {
			if n == maxTracePairs || len(k) > 255 || len(v) > maxTraceValue {
				continue
			}
			b = append(b, byte(len(k)))
			b = append(b, k...)
			b = binary.BigEndian.AppendUint16(b, uint16(len(v)))
			b = append(b, v...)
			n++
		}
		b[at] = byte(n)
	}
	binary.BigEndian.PutUint32(b[start:], uint32(len(b)-start-4+len(q.Body)))
	return b
}

// ReadStreamRequest reads one request whose body is at most maxBody
// bytes. io.EOF means the stream ended cleanly between frames; an error
// wrapping ErrBadStreamRequest comes with the request's ID, to answer.
func ReadStreamRequest(r *bufio.Reader, maxBody int) (StreamRequest, error) {
	var q StreamRequest
	frame, err := readFrame(r, requestHeadLen, maxBody+MaxStreamTraces*(1+maxTracePairs*(1+255+2+maxTraceValue)))
	if err != nil {
		return q, err
	}
	q.ID = binary.BigEndian.Uint32(frame)
	q.Op, q.Flags = frame[4], frame[5]
	if OpPath(q.Op) == "" {
		return q, fmt.Errorf("%w: op %d", ErrBadStreamRequest, q.Op)
	}
	if q.Flags&^StreamTransfer != 0 {
		return q, fmt.Errorf("%w: flags %#x", ErrBadStreamRequest, q.Flags)
	}
	ntraces := int(frame[6])
	if ntraces > MaxStreamTraces {
		return q, fmt.Errorf("%w: %d trace contexts", ErrBadStreamRequest, ntraces)
	}
	rest := frame[requestHeadLen:]
	for range ntraces {
		var t map[string]string
		if t, rest, err = readTrace(rest); err != nil {
			return q, err
		}
		q.Traces = append(q.Traces, t)
	}
	if len(rest) > maxBody {
		return q, fmt.Errorf("%w: body of %d bytes > %d", ErrBadStreamRequest, len(rest), maxBody)
	}
	q.Body = rest
	return q, nil
}

func readTrace(b []byte) (map[string]string, []byte, error) {
	short := fmt.Errorf("%w: trace context cut short", ErrBadStreamRequest)
	if len(b) < 1 {
		return nil, nil, short
	}
	n := int(b[0])
	if n > maxTracePairs {
		return nil, nil, fmt.Errorf("%w: %d trace pairs", ErrBadStreamRequest, n)
	}
	b = b[1:]
	t := make(map[string]string, n)
	for range n {
		if len(b) < 1 || len(b) < 1+int(b[0])+2 {
			return nil, nil, short
		}
		k := string(b[1 : 1+b[0]])
		b = b[1+int(b[0]):]
		vlen := int(binary.BigEndian.Uint16(b))
		if vlen > maxTraceValue || len(b) < 2+vlen {
			return nil, nil, short
		}
		t[k] = string(b[2 : 2+vlen])
		b = b[2+vlen:]
	}
	return t, b, nil
}

// StreamResponse is one response frame.
type StreamResponse struct {
	ID     uint32
	Status int
	Body   []byte
}

// StreamResponseHead is the size of a response frame's header: a writer
// that leaves this much room in front of the body it builds fills it in
// with PutStreamResponseHead, without copying the body.
const StreamResponseHead = 4 + responseHeadLen

// PutStreamResponseHead fills in the header of frame, whose first
// StreamResponseHead bytes were left for it and the rest is the body.
func PutStreamResponseHead(frame []byte, id uint32, status int) {
	binary.BigEndian.PutUint32(frame[0:], uint32(len(frame)-4))
	binary.BigEndian.PutUint32(frame[4:], id)
	binary.BigEndian.PutUint16(frame[8:], uint16(status))
}

// AppendStreamResponse appends s's encoding to b.
func AppendStreamResponse(b []byte, s StreamResponse) []byte {
	start := len(b)
	b = append(b, make([]byte, StreamResponseHead)...)
	b = append(b, s.Body...)
	PutStreamResponseHead(b[start:], s.ID, s.Status)
	return b
}

// ReadStreamResponse reads one response whose body is at most maxBody
// bytes. The body is a fresh slice the caller owns.
func ReadStreamResponse(r *bufio.Reader, maxBody int) (StreamResponse, error) {
	var s StreamResponse
	frame, err := readFrame(r, responseHeadLen, maxBody)
	if err != nil {
		return s, err
	}
	s.ID = binary.BigEndian.Uint32(frame)
	s.Status = int(binary.BigEndian.Uint16(frame[4:]))
	if s.Status < 100 || s.Status > 599 {
		return s, fmt.Errorf("%w: stream status %d", ErrMalformed, s.Status)
	}
	s.Body = frame[responseHeadLen:]
	return s, nil
}

// readFrame reads a length-prefixed frame of at least head and at most
// head+maxRest bytes, without allocating more than the frame: a hostile
// length cannot make the reader allocate past the bound.
func readFrame(r *bufio.Reader, head, maxRest int) ([]byte, error) {
	var lenBuf [4]byte
	if _, err := io.ReadFull(r, lenBuf[:1]); err != nil {
		return nil, err // io.EOF: a clean end between frames
	}
	if _, err := io.ReadFull(r, lenBuf[1:]); err != nil {
		return nil, truncated(err)
	}
	n := int64(binary.BigEndian.Uint32(lenBuf[:]))
	if n < int64(head) || n > int64(head)+int64(maxRest) {
		return nil, fmt.Errorf("%w: stream frame of %d bytes", ErrMalformed, n)
	}
	frame := make([]byte, n)
	if _, err := io.ReadFull(r, frame); err != nil {
		return nil, truncated(err)
	}
	return frame, nil
}
