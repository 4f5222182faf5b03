package api

import (
	"errors"
	"strings"
	"testing"
)

func TestValidateID(t *testing.T) {
	tests := []struct {
		id string
		ok bool
	}{
		{"a", true},
		{"myblock", true},
		{"A-Z_a.z~0-9", true},
		{strings.Repeat("x", 255), true},
		{"...", true},
		{"", false},
		{".", false},
		{"..", false},
		{strings.Repeat("x", 256), false},
		{"a/b", false},
		{"a b", false},
		{"a%2Fb", false},
		{"é", false},
		{"a\x00", false},
		{"a?b", false},
	}
	for _, tc := range tests {
		err := ValidateID(tc.id)
		if (err == nil) != tc.ok {
			t.Errorf("ValidateID(%q) = %v, want ok=%v", tc.id, err, tc.ok)
		}
		if err != nil && !errors.Is(err, ErrInvalidID) {
			t.Errorf("ValidateID(%q) error %v does not wrap ErrInvalidID", tc.id, err)
		}
	}
}

// FuzzValidateID: every accepted id is a plain URL path segment: no byte
// needs escaping and it cannot be "." or "..".
func FuzzValidateID(f *testing.F) {
	for _, s := range []string{"a", "..", "a/b", "x~y_z.1-2", "%2e%2e", strings.Repeat("z", 256)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, id string) {
		if ValidateID(id) != nil {
			return
		}
		if id == "." || id == ".." || len(id) == 0 || len(id) > MaxIDLen {
			t.Fatalf("accepted %q", id)
		}
		for _, c := range []byte(id) {
			if !strings.ContainsRune("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._~-", rune(c)) {
				t.Fatalf("accepted %q with byte %#x", id, c)
			}
		}
	})
}
