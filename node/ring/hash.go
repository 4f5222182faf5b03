package ring

import "math/bits"

// xxh64 is xxHash64 with seed 0, as specified in
// https://github.com/Cyan4973/xxHash/blob/dev/doc/xxhash_spec.md.
//
// It is written out here because the ring may import only the standard
// library, and the standard library's FNV and CRC leave short, similar inputs
// ("node-1#0", "node-1#1", ...) so poorly spread that rings built on them were
// measured 1.6–2.2x imbalanced. xxHash64 passes SMHasher's avalanche tests and
// costs a few nanoseconds for a block id, which matters because every request
// hashes its id. It takes a string so the hot path needs no []byte conversion.
func xxh64(s string) uint64 {
	const (
		prime1 uint64 = 11400714785074694791
		prime2 uint64 = 14029467366897019727
		prime3 uint64 = 1609587929392839161
		prime4 uint64 = 9650029242287828579
		prime5 uint64 = 2870177450012600261
	)
	round := func(acc, input uint64) uint64 {
		return bits.RotateLeft64(acc+input*prime2, 31) * prime1
	}
	merge := func(acc, val uint64) uint64 {
		return (acc^round(0, val))*prime1 + prime4
	}

	n := len(s)
	i := 0
	var h uint64
	if n >= 32 {
		// The seed (0) is added at run time: the constant expressions
		// prime1+prime2 and -prime1 overflow uint64 and would not compile.
		var seed uint64
		v1 := seed + prime1 + prime2
		v2 := seed + prime2
		v3 := seed
		v4 := seed - prime1
		for ; n-i >= 32; i += 32 {
			v1 = round(v1, le64(s, i))
			v2 = round(v2, le64(s, i+8))
			v3 = round(v3, le64(s, i+16))
			v4 = round(v4, le64(s, i+24))
		}
		h = bits.RotateLeft64(v1, 1) + bits.RotateLeft64(v2, 7) +
			bits.RotateLeft64(v3, 12) + bits.RotateLeft64(v4, 18)
		h = merge(h, v1)
		h = merge(h, v2)
		h = merge(h, v3)
		h = merge(h, v4)
	} else {
		h = prime5
	}
	h += uint64(n)

	for ; n-i >= 8; i += 8 {
		h ^= round(0, le64(s, i))
		h = bits.RotateLeft64(h, 27)*prime1 + prime4
	}
	if n-i >= 4 {
		h ^= uint64(le32(s, i)) * prime1
		h = bits.RotateLeft64(h, 23)*prime2 + prime3
		i += 4
	}
	for ; i < n; i++ {
		h ^= uint64(s[i]) * prime5
		h = bits.RotateLeft64(h, 11) * prime1
	}

	h ^= h >> 33
	h *= prime2
	h ^= h >> 29
	h *= prime3
	h ^= h >> 32
	return h
}

// le64 and le32 read little-endian words straight from the string; the
// compiler merges the byte loads into one load.
func le64(s string, i int) uint64 {
	_ = s[i+7] // one bounds check instead of eight
	return uint64(s[i]) | uint64(s[i+1])<<8 | uint64(s[i+2])<<16 | uint64(s[i+3])<<24 |
		uint64(s[i+4])<<32 | uint64(s[i+5])<<40 | uint64(s[i+6])<<48 | uint64(s[i+7])<<56
}

func le32(s string, i int) uint32 {
	_ = s[i+3]
	return uint32(s[i]) | uint32(s[i+1])<<8 | uint32(s[i+2])<<16 | uint32(s[i+3])<<24
}
