package ring

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden from the current code")

// goldenIDs mixes short, long, similar and edge-case ids, so a change to any
// branch of the hash shows up.
var goldenIDs = []string{
	"", "a", "b", "0", "block-0", "block-1", "block-2", "block-10", "block-11",
	"user42.avatar", "user43.avatar", "img_2024-01-01.raw", "~tilde", "x.y-z_w~v",
	"0123456789abcdef0123456789abcdef", "0123456789abcdef0123456789abcdeg",
	strings.Repeat("z", 63), strings.Repeat("z", 64), strings.Repeat("Q", 255),
	"node-1#0", // looks like a token input; must be placed like any id
}

// TestGoldenPlacement pins placement: the owners (rf=3) of fixed ids on fixed
// 3- and 4-node rings, and each node's share. A change to the hash, the token
// scheme, collision order or the walk fails this test. Such a change moves
// data in every running cluster, so it needs a migration story before the
// golden file is regenerated with -update.
func TestGoldenPlacement(t *testing.T) {
	var b strings.Builder
	b.WriteString("# Owners (rf=3) of fixed ids on fixed rings, and shares (rf=3).\n")
	b.WriteString("# Regenerate: go test ./node/ring -run TestGoldenPlacement -update\n")
	for _, n := range []int{3, 4} {
		r := mustNew(t, nodes(n, 20))
		fmt.Fprintf(&b, "\nring %d nodes x 20 vnodes\n", n)
		for _, m := range r.Members() {
			fmt.Fprintf(&b, "share %s %.6f\n", m.Name, r.Shares(3)[m.Name])
		}
		for _, id := range goldenIDs {
			fmt.Fprintf(&b, "%-34s %#016x %s\n", label(id), Position(id), strings.Join(r.OwnerNames(id, 3), " "))
		}
	}
	got := b.String()

	path := filepath.Join("testdata", "placement.golden")
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("wrote %s", path)
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	if got != string(want) {
		gl, wl := strings.Split(got, "\n"), strings.Split(string(want), "\n")
		for i := range max(len(gl), len(wl)) {
			g, w := line(gl, i), line(wl, i)
			if g != w {
				t.Errorf("%s:%d\n got: %s\nwant: %s", path, i+1, g, w)
			}
		}
		t.Fatal("placement changed; if intended, rerun with -update and plan the data migration")
	}
}

// label shortens long ids but keeps them distinct in the golden file.
func label(id string) string {
	if len(id) <= 32 {
		return fmt.Sprintf("%q", id)
	}
	return fmt.Sprintf("%q..%q(%d)", id[:12], id[len(id)-4:], len(id))
}

func line(ls []string, i int) string {
	if i < len(ls) {
		return ls[i]
	}
	return "<EOF>"
}
