package ring

import "testing"

// TestXXH64 pins the hash to the reference implementation: these vectors come
// from the xxHash specification ("" and "abc") and from the test suite of
// github.com/cespare/xxhash, which is checked against the reference xxhsum.
// The 63-byte input runs every code path (32-byte stripes, 8-, 4- and 1-byte
// tails). A change here moves every block of every cluster.
func TestXXH64(t *testing.T) {
	for _, tt := range []struct {
		in   string
		want uint64
	}{
		{"", 0xef46db3751d8e999},
		{"a", 0xd24ec4f1a98c6e5b},
		{"as", 0x1c330fb2d66be179},
		{"asd", 0x631c37ce72a97393},
		{"abc", 0x44bc2cf5ad770999},
		{"asdf", 0x415872f599cea71e},
		{"Call me Ishmael. Some years ago--never mind how long precisely-", 0x02a2e85470d6fd96},
	} {
		if got := xxh64(tt.in); got != tt.want {
			t.Errorf("xxh64(%q) = %#016x, want %#016x", tt.in, got, tt.want)
		}
	}
}

func BenchmarkPosition(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		Position("user-42.avatar.chunk-000017")
	}
}
