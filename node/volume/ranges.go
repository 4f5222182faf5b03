package volume

import "slices"

// Ranges is a set of block indexes as inclusive ranges [first, last],
// ascending and disjoint: how members report which blocks of a volume
// hold data (a volume written front to back is one range, whatever its
// size).
type Ranges [][2]int64

// RangesOf builds the ranges of a set of indexes (any order, duplicates
// allowed); it sorts idx.
func RangesOf(idx []int64) Ranges {
	slices.Sort(idx)
	var out Ranges
	for _, i := range idx {
		if n := len(out); n > 0 && i <= out[n-1][1]+1 {
			out[n-1][1] = max(out[n-1][1], i)
			continue
		}
		out = append(out, [2]int64{i, i})
	}
	return out
}

// Union merges sets; the inputs may come from untrusted members, so
// ranges are normalized (first > last dropped, overlaps merged).
func Union(sets ...Ranges) Ranges {
	var all Ranges
	for _, s := range sets {
		for _, r := range s {
			if r[0] >= 0 && r[0] <= r[1] {
				all = append(all, r)
			}
		}
	}
	slices.SortFunc(all, func(a, b [2]int64) int {
		switch {
		case a[0] < b[0]:
			return -1
		case a[0] > b[0]:
			return 1
		}
		return 0
	})
	var out Ranges
	for _, r := range all {
		if n := len(out); n > 0 && r[0] <= out[n-1][1]+1 {
			out[n-1][1] = max(out[n-1][1], r[1])
			continue
		}
		out = append(out, r)
	}
	return out
}

// Count is the number of indexes in the set.
func (rs Ranges) Count() int64 {
	var n int64
	for _, r := range rs {
		n += r[1] - r[0] + 1
	}
	return n
}

// Clip drops what lies at or beyond limit (a volume's block count).
func (rs Ranges) Clip(limit int64) Ranges {
	var out Ranges
	for _, r := range rs {
		if r[0] >= limit {
			break
		}
		out = append(out, [2]int64{r[0], min(r[1], limit-1)})
	}
	return out
}
