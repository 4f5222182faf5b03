// Package wire defines how block records travel between nodes: the HTTP
// headers of the single-record internal endpoints and the framed binary
// format of batched streams. Both carry the version and the CRC32C, so a
// record is verified end to end and every receiver can apply it
// idempotently by version.
package wire

import (
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/goblocks/goblocks/node/hlc"
	"github.com/goblocks/goblocks/node/storage"
)

// Header names of the internal single-record endpoints.
const (
	HeaderVersion  = "X-Goblocks-Version"
	HeaderChecksum = "X-Goblocks-Checksum"
	// HeaderState is "owned", "stale" or "tombstone" on internal reads.
	HeaderState = "X-Goblocks-State"
	// HeaderStaleSince is the RFC 3339 time a stale copy became stale.
	HeaderStaleSince = "X-Goblocks-Stale-Since"
	// HeaderApplied tells the sender whether the receiver stored the record
	// ("true") or already held a newer or equal version ("false").
	HeaderApplied = "X-Goblocks-Applied"
	// HeaderHeld is the version the receiver holds when it did not apply
	// the record (HeaderApplied "false").
	HeaderHeld = "X-Goblocks-Held"
	// HeaderTransfer marks a batch as a migration transfer ("migration").
	HeaderTransfer = "X-Goblocks-Transfer"
)

// States as carried in HeaderState.
const (
	StateOwned     = "owned"
	StateStale     = "stale"
	StateTombstone = "tombstone"
)

// ErrMalformed prefixes every decoding error of this package.
var ErrMalformed = errors.New("wire: malformed record")

// SetRecordHeaders writes m's version, checksum and state into h.
func SetRecordHeaders(h http.Header, m storage.Meta) {
	h.Set(HeaderVersion, m.Version.String())
	h.Set(HeaderChecksum, strconv.FormatUint(uint64(m.Checksum), 16))
	switch {
	case m.Tombstone:
		h.Set(HeaderState, StateTombstone)
	case !m.StaleSince.IsZero():
		h.Set(HeaderState, StateStale)
		h.Set(HeaderStaleSince, m.StaleSince.UTC().Format(time.RFC3339Nano))
	default:
		h.Set(HeaderState, StateOwned)
	}
}

// ParseRecordHeaders reads what SetRecordHeaders wrote. The payload is not
// part of the headers: callers check Checksum against it.
func ParseRecordHeaders(h http.Header) (storage.Meta, error) {
	var m storage.Meta
	v, err := hlc.ParseVersion(h.Get(HeaderVersion))
	if err != nil {
		return m, fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	m.Version = v
	sum, err := strconv.ParseUint(h.Get(HeaderChecksum), 16, 32)
	if err != nil {
		return m, fmt.Errorf("%w: checksum %q", ErrMalformed, h.Get(HeaderChecksum))
	}
	m.Checksum = uint32(sum)
	switch s := h.Get(HeaderState); s {
	case StateOwned, "":
	case StateTombstone:
		m.Tombstone = true
	case StateStale:
		t, err := time.Parse(time.RFC3339Nano, h.Get(HeaderStaleSince))
		if err != nil || t.IsZero() {
			return m, fmt.Errorf("%w: stale since %q", ErrMalformed, h.Get(HeaderStaleSince))
		}
		m.StaleSince = t
	default:
		return m, fmt.Errorf("%w: state %q", ErrMalformed, s)
	}
	return m, nil
}
