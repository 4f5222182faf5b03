package slot

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func TestClaimTakesLowestFreeSlot(t *testing.T) {
	dir := t.TempDir()
	a, err := Claim(dir, "node", 0)
	if err != nil {
		t.Fatal(err)
	}
	b, err := Claim(dir, "node", 0)
	if err != nil {
		t.Fatal(err)
	}
	if a.Name != "node-1" || b.Name != "node-2" {
		t.Fatalf("claimed %s, %s; want node-1, node-2", a.Name, b.Name)
	}
	if a.Dir != filepath.Join(dir, "node-1") {
		t.Fatalf("dir %s", a.Dir)
	}
	if err := os.WriteFile(filepath.Join(a.Dir, "data"), []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	// A released slot is reused, with its data.
	if err := a.Release(); err != nil {
		t.Fatal(err)
	}
	c, err := Claim(dir, "node", 0)
	if err != nil {
		t.Fatal(err)
	}
	if c.Name != "node-1" {
		t.Fatalf("after release claimed %s, want node-1", c.Name)
	}
	if _, err := os.Stat(filepath.Join(c.Dir, "data")); err != nil {
		t.Fatalf("slot data lost: %v", err)
	}
	c.Release()
	b.Release()
}

// The lock must hold across processes (replicas are separate containers
// sharing the volume), not only within one.
func TestClaimExcludesOtherProcesses(t *testing.T) {
	if os.Getenv("SLOT_HELPER_DIR") != "" {
		s, err := Claim(os.Getenv("SLOT_HELPER_DIR"), "node", 0)
		if err != nil {
			os.Exit(3)
		}
		os.Stdout.WriteString(s.Name + "\n")
		os.Stdin.Read(make([]byte, 1)) // hold the slot until the parent closes stdin
		os.Exit(0)
	}
	dir := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^TestClaimExcludesOtherProcesses$")
	cmd.Env = append(os.Environ(), "SLOT_HELPER_DIR="+dir)
	stdin, _ := cmd.StdinPipe()
	stdout, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 64)
	n, _ := stdout.Read(buf)
	if got := strings.TrimSpace(string(buf[:n])); got != "node-1" {
		t.Fatalf("child claimed %q", got)
	}
	s, err := Claim(dir, "node", 0)
	if err != nil {
		t.Fatal(err)
	}
	if s.Name != "node-2" {
		t.Fatalf("claimed %s while the child holds node-1", s.Name)
	}
	s.Release()
	stdin.Close()
	if err := cmd.Wait(); err != nil {
		t.Fatal(err)
	}
	// The child is gone: its slot is free again.
	s, err = Claim(dir, "node", 0)
	if err != nil {
		t.Fatal(err)
	}
	if s.Name != "node-1" {
		t.Fatalf("claimed %s after the child exited, want node-1", s.Name)
	}
	s.Release()
}

func TestClaimRejectsBadPrefix(t *testing.T) {
	for _, p := range []string{"", "../x", "a/b", strings.Repeat("a", 65), "-x"} {
		if _, err := Claim(t.TempDir(), p, 0); err == nil {
			t.Errorf("prefix %q accepted", p)
		}
	}
}

func TestPreferredSlot(t *testing.T) {
	dir := t.TempDir()
	a, err := Claim(dir, "node", 3)
	if err != nil || a.Name != "node-3" {
		t.Fatalf("preferred free slot: %v, %v", a, err)
	}
	defer a.Release()
	// Held: the lowest free slot instead.
	b, err := Claim(dir, "node", 3)
	if err != nil || b.Name != "node-1" {
		t.Fatalf("preferred held slot: %v, %v", b, err)
	}
	defer b.Release()
}

func TestReplicaNumber(t *testing.T) {
	for host, want := range map[string]int{
		"goblocks_node_2.goblocks_default.": 2, // Compose v1
		"goblocks-node-12.goblocks_default": 12,
		"goblocks-node-3":                   3,
		"3f2a9c1b7e4d":                      0, // a container ID
		"node.":                             0,
		"goblocks_node_0":                   0,
		"goblocks_node_02":                  0,
		"goblocks_node_99999":               0,
		"goblocks_node_x":                   0,
		"":                                  0,
	} {
		if got := ReplicaNumber(host); got != want {
			t.Errorf("ReplicaNumber(%q) = %d, want %d", host, got, want)
		}
	}
}
