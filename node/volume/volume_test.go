package volume

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestParseSize(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want int64
		err  bool
	}{
		{"4096", 4096, false},
		{"64MiB", 64 << 20, false},
		{"64M", 64 << 20, false},
		{"64 MiB", 64 << 20, false},
		{"1GiB", 1 << 30, false},
		{"1GB", 1e9, false},
		{"8kB", 8000, false},
		{"2TiB", 2 << 40, false},
		{"1024B", 1024, false},
		{"0", 0, true},
		{"-4096", 0, true},
		{"", 0, true},
		{"MiB", 0, true},
		{"1.5GiB", 0, true},
		{"64mib", 0, true},
		{"2048TiB", 0, true}, // over 1 PiB
		{"99999999999999999999", 0, true},
	} {
		got, err := ParseSize(tc.in)
		if (err != nil) != tc.err || got != tc.want {
			t.Errorf("ParseSize(%q) = %d, %v; want %d, error %v", tc.in, got, err, tc.want, tc.err)
		}
		if err != nil && !errors.Is(err, ErrInvalid) {
			t.Errorf("ParseSize(%q): %v does not wrap ErrInvalid", tc.in, err)
		}
	}
}

func TestValidate(t *testing.T) {
	now := time.Date(2026, 12, 2, 0, 0, 0, 0, time.UTC)
	ok := Volume{Name: "vm-disk_1.a~b", Size: 64 << 20, BlockSize: 4096, State: Ready, Created: now}
	for _, tc := range []struct {
		name   string
		change func(*Volume)
		valid  bool
	}{
		{"ok", func(*Volume) {}, true},
		{"deleting", func(v *Volume) { v.State = Deleting }, true},
		{"one block", func(v *Volume) { v.Size = 4096 }, true},
		{"1 PiB", func(v *Volume) { v.Size = MaxSize }, true},
		{"empty name", func(v *Volume) { v.Name = "" }, false},
		{"dot", func(v *Volume) { v.Name = "." }, false},
		{"dotdot", func(v *Volume) { v.Name = ".." }, false},
		{"slash", func(v *Volume) { v.Name = "a/b" }, false},
		{"space", func(v *Volume) { v.Name = "a b" }, false},
		{"name too long", func(v *Volume) { v.Name = strings.Repeat("a", MaxNameLen+1) }, false},
		{"longest name", func(v *Volume) { v.Name = strings.Repeat("a", MaxNameLen) }, true},
		{"zero size", func(v *Volume) { v.Size = 0 }, false},
		{"negative size", func(v *Volume) { v.Size = -4096 }, false},
		{"unaligned size", func(v *Volume) { v.Size = 4097 }, false},
		{"over 1 PiB", func(v *Volume) { v.Size = MaxSize + 4096 }, false},
		{"block size 0", func(v *Volume) { v.BlockSize = 0 }, false},
		{"block size 3000", func(v *Volume) { v.BlockSize = 3000 }, false},
		{"unknown state", func(v *Volume) { v.State = "gone" }, false},
	} {
		v := ok
		tc.change(&v)
		err := v.Validate()
		if (err == nil) != tc.valid {
			t.Errorf("%s: Validate() = %v, want valid %v", tc.name, err, tc.valid)
		}
		if err != nil && !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: %v does not wrap ErrInvalid", tc.name, err)
		}
	}
}

func TestBlockIDRoundTrip(t *testing.T) {
	for _, tc := range []struct {
		name  string
		index int64
		id    string
	}{
		{"disk", 0, "disk.0000000000000000"},
		{"disk", 255, "disk.00000000000000ff"},
		{"a.0000000000000001", 2, "a.0000000000000001.0000000000000002"},
		{"x", MaxSize / 4096, "x.0000004000000000"},
	} {
		id := BlockID(tc.name, tc.index)
		if id != tc.id {
			t.Errorf("BlockID(%q, %d) = %q, want %q", tc.name, tc.index, id, tc.id)
		}
		name, index, ok := ParseBlockID(id)
		if !ok || name != tc.name || index != tc.index {
			t.Errorf("ParseBlockID(%q) = %q, %d, %v", id, name, index, ok)
		}
	}
	for _, id := range []string{"", "disk", "disk.00000000000000FF", "disk.0000000000000g00", ".0000000000000000", "disk-0000000000000000", "disk.000000000000000"} {
		if name, _, ok := ParseBlockID(id); ok && name != "" {
			t.Errorf("ParseBlockID(%q) accepted it as volume %q", id, name)
		}
	}
}

// Ids of different (volume, index) pairs never collide, also for names
// that look like other volumes' block ids.
func TestBlockIDInjective(t *testing.T) {
	names := []string{"a", "a.", "a.0", "a.0000000000000000", "a.0000000000000001", "b", "a0", "a.000000000000000"}
	seen := map[string]string{}
	for _, n := range names {
		for i := range int64(3) {
			id := BlockID(n, i)
			key := n + "#" + string(rune('0'+i))
			if prev, dup := seen[id]; dup {
				t.Fatalf("BlockID collision: %s and %s both give %q", prev, key, id)
			}
			seen[id] = key
		}
	}
}

func TestSpans(t *testing.T) {
	v := Volume{Name: "v", Size: 4 * 4096, BlockSize: 4096, State: Ready}
	for _, tc := range []struct {
		off, length int64
		want        []span
		err         bool
	}{
		{0, 4096, []span{{0, 0, 4096, 0}}, false},
		{0, 0, nil, false},
		{4096 * 4, 0, nil, false},
		{100, 200, []span{{0, 100, 300, 0}}, false},
		{4000, 200, []span{{0, 4000, 4096, 0}, {1, 0, 104, 96}}, false},
		{4096, 3 * 4096, []span{{1, 0, 4096, 0}, {2, 0, 4096, 4096}, {3, 0, 4096, 8192}}, false},
		{512, 3*4096 + 1024, []span{{0, 512, 4096, 0}, {1, 0, 4096, 3584}, {2, 0, 4096, 7680}, {3, 0, 1536, 11776}}, false},
		{4096*4 - 1, 1, []span{{3, 4095, 4096, 0}}, false},
		{4096*4 - 1, 2, nil, true},
		{4096 * 5, 0, nil, true},
		{-1, 1, nil, true},
		{0, -1, nil, true},
		{1, 1 << 62, nil, true},
	} {
		got, err := spans(v, tc.off, tc.length)
		if (err != nil) != tc.err {
			t.Errorf("spans(%d, %d) error %v, want error %v", tc.off, tc.length, err, tc.err)
			continue
		}
		if err != nil && !errors.Is(err, ErrRange) {
			t.Errorf("spans(%d, %d): %v does not wrap ErrRange", tc.off, tc.length, err)
		}
		if len(got) != len(tc.want) {
			t.Errorf("spans(%d, %d) = %v, want %v", tc.off, tc.length, got, tc.want)
			continue
		}
		for i := range got {
			if got[i] != tc.want[i] {
				t.Errorf("spans(%d, %d) = %v, want %v", tc.off, tc.length, got, tc.want)
				break
			}
		}
	}
}

func TestRanges(t *testing.T) {
	for _, tc := range []struct {
		name  string
		idx   []int64
		want  Ranges
		count int64
	}{
		{"empty", nil, nil, 0},
		{"one", []int64{5}, Ranges{{5, 5}}, 1},
		{"run", []int64{3, 1, 2, 0}, Ranges{{0, 3}}, 4},
		{"gaps and duplicates", []int64{9, 1, 2, 2, 7, 8, 4}, Ranges{{1, 2}, {4, 4}, {7, 9}}, 6},
	} {
		got := RangesOf(tc.idx)
		if len(got) != len(tc.want) || got.Count() != tc.count {
			t.Errorf("%s: RangesOf = %v (count %d), want %v (count %d)", tc.name, got, got.Count(), tc.want, tc.count)
			continue
		}
		for i := range got {
			if got[i] != tc.want[i] {
				t.Errorf("%s: RangesOf = %v, want %v", tc.name, got, tc.want)
			}
		}
	}
	u := Union(Ranges{{0, 3}, {10, 12}}, Ranges{{4, 5}, {11, 20}}, Ranges{{30, 29}, {-5, -1}}, nil)
	want := Ranges{{0, 5}, {10, 20}}
	if len(u) != len(want) || u[0] != want[0] || u[1] != want[1] {
		t.Errorf("Union = %v, want %v (adjacent merged, overlaps merged, inverted and negative dropped)", u, want)
	}
	if c := (Ranges{{0, 5}, {10, 20}}).Clip(12); c.Count() != 8 || c[1] != [2]int64{10, 11} {
		t.Errorf("Clip(12) = %v", c)
	}
}
