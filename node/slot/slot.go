// Package slot gives replicas that share one data volume (docker compose
// --scale with a named volume) stable identities: each process claims the
// first free numbered directory under the volume and keeps it, with its
// data, for as long as it runs. After a restart the replicas claim the same
// directories again, so a node comes back with its name and its blocks.
package slot

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
)

// ErrNoSlot is returned when every slot up to the limit is held.
var ErrNoSlot = errors.New("slot: no free slot")

// MaxSlots bounds the search; a lab cluster never has this many replicas.
const MaxSlots = 1024

var validPrefix = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)

// Slot is a claimed directory. Its lock is held until Release (or the
// process exits: the kernel drops flock locks of dead processes, so a
// crashed replica never leaves a slot taken).
type Slot struct {
	Name string // e.g. "node-2": the replica's logical name
	Dir  string // dir/Name: the replica's data directory
	lock *os.File
}

// Claim takes slot "<prefix>-<preferred>" if it is free (preferred 0: no
// preference), else the lowest-numbered slot "<prefix>-N" under dir whose
// lock no live process holds, creating it if needed. Lower numbers first,
// so after a full restart N replicas hold slots 1..N and a scale-up adds
// N+1.
func Claim(dir, prefix string, preferred int) (*Slot, error) {
	if !validPrefix.MatchString(prefix) {
		return nil, fmt.Errorf("slot: prefix %q: want 1-64 of [A-Za-z0-9._-]", prefix)
	}
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("slot: %w", err)
	}
	if preferred >= 1 && preferred <= MaxSlots {
		if s, err := tryClaim(dir, prefix+"-"+strconv.Itoa(preferred)); s != nil || err != nil {
			return s, err
		}
	}
	for n := 1; n <= MaxSlots; n++ {
		name := prefix + "-" + strconv.Itoa(n)
		s, err := tryClaim(dir, name)
		if err != nil {
			return nil, err
		}
		if s != nil {
			return s, nil
		}
	}
	return nil, fmt.Errorf("%w under %s (%d held)", ErrNoSlot, dir, MaxSlots)
}

// ReplicaNumber is the number Compose gave the container called host (the
// name Docker's DNS returns for the container's address:
// "goblocks_node_2.goblocks_default." with Compose v1, "goblocks-node-2..."
// with v2), or 0 when the name ends in none. A replica that prefers this
// slot takes the name `docker ps` shows, so scaling down (which removes
// the highest-numbered containers) removes the highest-numbered nodes.
func ReplicaNumber(host string) int {
	label, _, _ := strings.Cut(host, ".")
	i := strings.LastIndexAny(label, "_-")
	if i < 0 {
		return 0
	}
	n, err := strconv.Atoi(label[i+1:])
	if err != nil || n < 1 || n > MaxSlots || label[i+1] == '0' {
		return 0
	}
	return n
}

// tryClaim returns nil, nil when another process holds the slot.
func tryClaim(dir, name string) (*Slot, error) {
	sdir := filepath.Join(dir, name)
	if err := os.MkdirAll(sdir, 0o750); err != nil {
		return nil, fmt.Errorf("slot: %w", err)
	}
	// The lock file sits beside, not inside, the slot directory so the
	// engine owns everything in sdir.
	f, err := os.OpenFile(sdir+".lock", os.O_CREATE|os.O_RDWR, 0o640)
	if err != nil {
		return nil, fmt.Errorf("slot: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, nil
		}
		return nil, fmt.Errorf("slot: lock %s: %w", sdir, err)
	}
	return &Slot{Name: name, Dir: sdir, lock: f}, nil
}

// Release frees the slot for another process.
func (s *Slot) Release() error {
	return s.lock.Close() // closing the descriptor drops the flock
}
