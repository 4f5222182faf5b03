package auth

import (
	"errors"
	"net/http"
	"strings"
	"testing"
)

func TestCheck(t *testing.T) {
	const secret = "0123456789abcdef0123"
	for _, tc := range []struct {
		name   string
		token  *Token
		header string
		want   error
	}{
		{"right token", NewToken(secret), "Bearer " + secret, nil},
		{"no header", NewToken(secret), "", ErrUnauthorized},
		{"wrong token", NewToken(secret), "Bearer " + strings.ToUpper(secret), ErrUnauthorized},
		{"prefix of the token", NewToken(secret), "Bearer " + secret[:10], ErrUnauthorized},
		{"token without scheme", NewToken(secret), secret, ErrUnauthorized},
		{"not known yet", NewToken(""), "Bearer ", ErrNotReady},
		{"nil token refuses", nil, "Bearer " + secret, ErrNotReady},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := http.Header{}
			if tc.header != "" {
				h.Set("Authorization", tc.header)
			}
			if err := tc.token.Check(h); !errors.Is(err, tc.want) || (tc.want == nil) != (err == nil) {
				t.Fatalf("Check = %v, want %v", err, tc.want)
			}
		})
	}
}

func TestSetLaterAndAuthorize(t *testing.T) {
	var tok Token
	h := http.Header{}
	tok.Authorize(h)
	if h.Get("Authorization") != "" {
		t.Fatal("an unknown token must not be sent")
	}
	gen, err := Generate()
	if err != nil {
		t.Fatal(err)
	}
	if err := Validate(gen); err != nil {
		t.Fatalf("generated token invalid: %v", err)
	}
	tok.Set(gen)
	tok.Authorize(h)
	if err := tok.Check(h); err != nil {
		t.Fatalf("own header refused: %v", err)
	}
}

func TestValidate(t *testing.T) {
	for _, tc := range []struct {
		tok string
		ok  bool
	}{
		{strings.Repeat("a", 16), true},
		{strings.Repeat("a", MaxLen), true},
		{strings.Repeat("a", 15), false},
		{strings.Repeat("a", MaxLen+1), false},
		{"0123456789 abcdef", false},
		{"0123456789abcdef\n", false},
		{"0123456789abcdéf", false},
	} {
		if err := Validate(tc.tok); (err == nil) != tc.ok {
			t.Errorf("Validate(%q) = %v, want ok=%v", tc.tok, err, tc.ok)
		}
	}
}
