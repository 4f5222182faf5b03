package client

import (
	"context"
	"errors"
	"fmt"
	"net/http"
)

// Sentinel errors. Every error a Client returns for a failed request is an
// *Error that unwraps to at most one of them, so callers branch with
// errors.Is and never on status codes.
var (
	// ErrBadRequest: the request was refused as invalid (400, 413 and any
	// other 4xx not listed below: bad id, wrong block size, bad
	// consistency). Never retried; nothing was changed.
	ErrBadRequest = errors.New("goblocks: bad request")
	// ErrNotFound: no such block, or it was deleted (404).
	ErrNotFound = errors.New("goblocks: not found")
	// ErrConflict: the request conflicts with the block's state (409).
	ErrConflict = errors.New("goblocks: conflict")
	// ErrUnavailable: not enough replicas answered (503), or no node could
	// be reached at all. Retried on the next node first.
	ErrUnavailable = errors.New("goblocks: unavailable")
)

// Error is a failed request: the node that answered last, its status and
// the server's JSON error body. Status is 0 when the node could not be
// reached (Err then holds the network error).
type Error struct {
	Op      string // "PUT", "GET", "DELETE", ...
	ID      string // block id or path
	Node    string // address of the node that failed last; "" when not sent
	Status  int    // HTTP status; 0 for a network error
	Code    string // the server's machine-readable code, e.g. "bad_size"
	Message string // the server's error text
	Err     error  // network or decoding error, if any
}

func (e *Error) Error() string {
	var what string
	switch {
	case e.Status == 0 && e.Err != nil:
		what = e.Err.Error()
	case e.Message != "":
		what = fmt.Sprintf("%d %s: %s", e.Status, e.Code, e.Message)
	default:
		what = fmt.Sprintf("%d %s", e.Status, http.StatusText(e.Status))
	}
	if e.Node == "" {
		return fmt.Sprintf("goblocks: %s %s: %s (not sent)", e.Op, e.ID, what)
	}
	return fmt.Sprintf("goblocks: %s %s via %s: %s", e.Op, e.ID, e.Node, what)
}

// Unwrap returns the sentinel the status maps to and the cause, so both
// errors.Is(err, ErrNotFound) and errors.Is(err, context.DeadlineExceeded)
// work.
func (e *Error) Unwrap() []error {
	var errs []error
	if s := sentinel(e.Status); s != nil && !(e.Status == 0 && errors.Is(e.Err, context.Canceled)) {
		errs = append(errs, s)
	}
	if e.Err != nil {
		errs = append(errs, e.Err)
	}
	return errs
}

// sentinel maps a status to its sentinel error; status 0 (unreachable or
// timed out) is unavailable. Unwrap leaves it out when the caller gave up.
func sentinel(status int) error {
	switch {
	case status == 0, status == http.StatusServiceUnavailable:
		return ErrUnavailable
	case status == http.StatusNotFound:
		return ErrNotFound
	case status == http.StatusConflict:
		return ErrConflict
	case status >= 400 && status < 500:
		return ErrBadRequest
	}
	return nil
}

// retryable reports whether another node may succeed where this attempt
// failed: network errors and 5xx. A 4xx is the same answer everywhere.
func retryable(status int) bool {
	return status == 0 || status >= 500
}
