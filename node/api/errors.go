package api

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"

	"github.com/goblocks/goblocks/node/replication"
	"github.com/goblocks/goblocks/node/storage"
	"github.com/goblocks/goblocks/node/storage/diskguard"
	"github.com/goblocks/goblocks/node/wire"
)

// Sentinel errors for bad requests; each maps to one status and code.
var (
	ErrInvalidID          = errors.New("api: invalid block id")
	ErrBadSize            = errors.New("api: block has the wrong size")
	ErrTooLarge           = errors.New("api: block larger than the block size")
	ErrBadConsistency     = errors.New("api: invalid consistency")
	ErrUnauthorized       = errors.New("api: unauthorized")
	ErrNotReady           = errors.New("api: not ready")
	ErrOverloaded         = errors.New("api: overloaded")
	ErrMethodNotAllowed   = errors.New("api: method not allowed")
	ErrNoRoute            = errors.New("api: no such endpoint")
	ErrChecksumMismatch   = errors.New("api: payload does not match its checksum")
	ErrUnexpectedRequest  = errors.New("api: unexpected request")
	errClientDisconnected = errors.New("api: client went away")
)

// errorStatus is the one place errors become HTTP statuses and the stable
// machine-readable codes of the JSON error body.
func errorStatus(err error) (int, string) {
	if status, code, ok := antiEntropyStatus(err); ok {
		return status, code
	}
	switch {
	case errors.Is(err, ErrInvalidID):
		return http.StatusBadRequest, "invalid_id"
	case errors.Is(err, ErrBadSize):
		return http.StatusBadRequest, "bad_size"
	case errors.Is(err, ErrTooLarge):
		return http.StatusRequestEntityTooLarge, "too_large"
	case errors.Is(err, ErrBadConsistency):
		return http.StatusBadRequest, "invalid_consistency"
	case errors.Is(err, wire.ErrMalformed), errors.Is(err, ErrUnexpectedRequest):
		return http.StatusBadRequest, "malformed"
	case errors.Is(err, ErrFutureVersion):
		return http.StatusBadRequest, "future_version"
	case errors.Is(err, ErrChecksumMismatch):
		return http.StatusBadRequest, "checksum_mismatch"
	case errors.Is(err, ErrUnauthorized):
		return http.StatusUnauthorized, "unauthorized"
	case errors.Is(err, diskguard.ErrInsufficientStorage):
		return http.StatusInsufficientStorage, "insufficient_storage"
	case errors.Is(err, ErrOverloaded):
		return http.StatusServiceUnavailable, "overloaded"
	case errors.Is(err, ErrNotReady):
		return http.StatusServiceUnavailable, "not_ready"
	case errors.Is(err, ErrMethodNotAllowed):
		return http.StatusMethodNotAllowed, "method_not_allowed"
	case errors.Is(err, ErrNoRoute):
		return http.StatusNotFound, "no_route"
	case errors.Is(err, storage.ErrNotFound):
		return http.StatusNotFound, "not_found"
	case errors.Is(err, storage.ErrCorrupt):
		return http.StatusInternalServerError, "corrupt"
	case errors.Is(err, replication.ErrUnavailable):
		return http.StatusServiceUnavailable, "unavailable"
	case errors.Is(err, errClientDisconnected), errors.Is(err, context.Canceled):
		return 499, "client_closed"
	case errors.Is(err, storage.ErrClosed):
		return http.StatusServiceUnavailable, "shutting_down"
	case errors.Is(err, storage.ErrFailed):
		return http.StatusServiceUnavailable, "store_failed"
	}
	return http.StatusInternalServerError, "internal"
}

type errorBody struct {
	Error string `json:"error"`
	Code  string `json:"code"`
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// writeError answers with the mapped status and {"error", "code"}.
func writeError(w http.ResponseWriter, err error) (status int, code string) {
	status, code = errorStatus(err)
	if errors.Is(err, ErrTooLarge) || errors.Is(err, ErrBadSize) {
		// The rest of the body is unread: without this the server would
		// try to drain it (blocking on an endless body) before replying.
		w.Header().Set("Connection", "close")
	}
	writeJSON(w, status, errorBody{Error: err.Error(), Code: code})
	return status, code
}
