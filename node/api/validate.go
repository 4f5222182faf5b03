package api

import (
	"errors"
	"fmt"
	"io"
	"net/http"

	"github.com/goblocks/goblocks/node/replication"
)

// MaxIDLen is the longest accepted block id.
const MaxIDLen = 255

// ValidateID accepts 1-255 bytes of [A-Za-z0-9._~-], except "." and "..":
// a URL path segment that needs no escaping and cannot be a path trick.
func ValidateID(id string) error {
	if len(id) == 0 || len(id) > MaxIDLen {
		return fmt.Errorf("%w: length %d, want 1-%d", ErrInvalidID, len(id), MaxIDLen)
	}
	if id == "." || id == ".." {
		return fmt.Errorf("%w: %q", ErrInvalidID, id)
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' ||
			c == '.' || c == '_' || c == '~' || c == '-'
		if !ok {
			return fmt.Errorf("%w: byte %#x at %d; allowed: A-Z a-z 0-9 . _ ~ -", ErrInvalidID, c, i)
		}
	}
	return nil
}

// readBlock reads exactly size bytes of body. It never reads more than
// size+1 bytes, so an oversized or endless body costs one block of memory.
func readBlock(r *http.Request, size int) ([]byte, error) {
	if r.ContentLength > int64(size) {
		return nil, fmt.Errorf("%w: Content-Length %d > %d", ErrTooLarge, r.ContentLength, size)
	}
	if r.ContentLength >= 0 && r.ContentLength < int64(size) {
		return nil, fmt.Errorf("%w: Content-Length %d, want exactly %d", ErrBadSize, r.ContentLength, size)
	}
	buf := make([]byte, size+1)
	n, err := io.ReadFull(r.Body, buf)
	switch {
	case n > size:
		return nil, fmt.Errorf("%w: body longer than %d bytes", ErrTooLarge, size)
	case errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF):
		if n != size {
			return nil, fmt.Errorf("%w: %d bytes, want exactly %d", ErrBadSize, n, size)
		}
		return buf[:size], nil
	case err != nil:
		return nil, fmt.Errorf("%w: %w", errClientDisconnected, err)
	}
	return buf[:size], nil
}

// consistencyParam reads ?consistency=; empty means the node's default.
func consistencyParam(r *http.Request) (replication.Consistency, error) {
	v := r.URL.Query().Get("consistency")
	if v == "" {
		return "", nil
	}
	c, err := replication.ParseConsistency(v)
	if err != nil {
		return "", fmt.Errorf("%w: %w", ErrBadConsistency, err)
	}
	return c, nil
}
