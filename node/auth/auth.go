// Package auth holds the bearer secrets a node checks and sends: the
// cluster token that guards /internal/* (peer to peer) and the optional
// admin token that guards /admin/* and /metrics.
//
// The cluster token may become known only after start: with ZKAuth and no
// ClusterToken the nodes share a generated one through ZooKeeper, under a
// digest ACL. Until it is known, internal requests are refused as "not
// ready" (503) rather than let through.
package auth

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"sync/atomic"
)

// Errors of Check. Callers map them to statuses with errors.Is.
var (
	// ErrUnauthorized: the request carries no token or the wrong one.
	ErrUnauthorized = errors.New("missing or wrong bearer token")
	// ErrNotReady: the token is not known yet (it is read from ZooKeeper).
	ErrNotReady = errors.New("the cluster token is not known yet (it is shared through ZooKeeper)")
)

// MaxLen bounds a token: it travels in every internal request's header.
const MaxLen = 256

// Token is a bearer secret that can be set once it is known. The zero
// value is a token not known yet. Safe for concurrent use.
type Token struct{ v atomic.Pointer[string] }

// NewToken returns a token holding s ("" = not known yet).
func NewToken(s string) *Token {
	t := &Token{}
	if s != "" {
		t.Set(s)
	}
	return t
}

// Set makes s the token.
func (t *Token) Set(s string) { t.v.Store(&s) }

// Value is the token, "" while it is not known.
func (t *Token) Value() string {
	if t == nil {
		return ""
	}
	if p := t.v.Load(); p != nil {
		return *p
	}
	return ""
}

// Authorize adds the token to an outgoing request.
func (t *Token) Authorize(h http.Header) {
	if v := t.Value(); v != "" {
		h.Set("Authorization", "Bearer "+v)
	}
}

// Check verifies a request's Authorization header in constant time. A nil
// or unknown token refuses everything: a node never serves what the
// token guards without one.
func (t *Token) Check(h http.Header) error {
	want := t.Value()
	if want == "" {
		return ErrNotReady
	}
	if subtle.ConstantTimeCompare([]byte(h.Get("Authorization")), []byte("Bearer "+want)) != 1 {
		return ErrUnauthorized
	}
	return nil
}

// Generate returns a new random token (256 bits, hex).
func Generate() (string, error) {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("generate token: %w", err)
	}
	return hex.EncodeToString(b[:]), nil
}

// Validate checks a token read from configuration or ZooKeeper: printable
// ASCII without spaces (it goes into an HTTP header), 16..MaxLen bytes.
func Validate(s string) error {
	if len(s) < 16 || len(s) > MaxLen {
		return fmt.Errorf("token is %d bytes: want 16..%d", len(s), MaxLen)
	}
	for i := 0; i < len(s); i++ {
		if s[i] <= ' ' || s[i] > '~' {
			return fmt.Errorf("token byte %d is %q: want printable ASCII without spaces", i, s[i])
		}
	}
	return nil
}
