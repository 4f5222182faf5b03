// Package volume maps block devices onto the store: a volume is a name and
// a size, and byte offset o of volume NAME lives in block o/BlockSize, whose
// id is BlockID(NAME, o/BlockSize). Volume records (name, size, state) live
// in the cluster's catalog (ZooKeeper), never on one node; the blocks are
// ordinary replicated blocks, written at the cluster's write consistency.
package volume

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Errors of the catalog and of volume input.
var (
	// ErrInvalid: a name, size or record is not acceptable (a 4xx).
	ErrInvalid = errors.New("volume: invalid")
	// ErrExists: a volume of that name already exists.
	ErrExists = errors.New("volume: already exists")
	// ErrNotFound: no volume of that name.
	ErrNotFound = errors.New("volume: not found")
	// ErrDeleting: the volume is being removed; it takes no new clients.
	ErrDeleting = errors.New("volume: being removed")
	// ErrNoCatalog: this node has no catalog (static Peers, no ZooKeeper).
	ErrNoCatalog = errors.New("volume: volumes need ZooKeeper membership (this node runs with static Peers)")
)

// States of a volume record.
const (
	Ready    = "ready"
	Deleting = "deleting" // volume rm has started: no new NBD clients
)

// indexDigits is the fixed width of the block index in a block id. A fixed
// width keeps BlockID injective: two (name, index) pairs with different
// names give ids of different lengths or different prefixes.
const indexDigits = 16

// MaxIDLen mirrors the block API's id limit (api.MaxIDLen).
const MaxIDLen = 255

// MaxNameLen leaves room for ".<16 hex digits>" in a block id.
const MaxNameLen = MaxIDLen - 1 - indexDigits

// MaxSize bounds a volume at 1 PiB: the block index and byte offsets stay
// far from overflow, and NBD's 64-bit sizes hold it.
const MaxSize = int64(1) << 50

// Volume is one catalog record.
type Volume struct {
	Name      string    `json:"name"`
	Size      int64     `json:"size"`
	BlockSize int       `json:"block_size"`
	State     string    `json:"state"`
	Created   time.Time `json:"created"`
}

// Blocks is the number of blocks the volume spans.
func (v Volume) Blocks() int64 { return v.Size / int64(v.BlockSize) }

// Validate checks a record, from a user or read back from the catalog
// (where a foreign client may have written anything).
func (v Volume) Validate() error {
	if err := ValidateName(v.Name); err != nil {
		return err
	}
	if v.BlockSize <= 0 || v.BlockSize&(v.BlockSize-1) != 0 {
		return fmt.Errorf("%w: block size %d is not a power of two", ErrInvalid, v.BlockSize)
	}
	if v.Size <= 0 || v.Size > MaxSize || v.Size%int64(v.BlockSize) != 0 {
		return fmt.Errorf("%w: size %d: want a positive multiple of %d up to %d (1 PiB)", ErrInvalid, v.Size, v.BlockSize, MaxSize)
	}
	if v.State != Ready && v.State != Deleting {
		return fmt.Errorf("%w: state %q", ErrInvalid, v.State)
	}
	return nil
}

// ValidateName accepts the block id alphabet (A-Z a-z 0-9 . _ ~ -), 1 to
// MaxNameLen bytes, not "." or "..".
func ValidateName(name string) error {
	if len(name) == 0 || len(name) > MaxNameLen {
		return fmt.Errorf("%w: name length %d, want 1-%d", ErrInvalid, len(name), MaxNameLen)
	}
	if name == "." || name == ".." {
		return fmt.Errorf("%w: name %q", ErrInvalid, name)
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' ||
			c == '.' || c == '_' || c == '~' || c == '-'
		if !ok {
			return fmt.Errorf("%w: name: byte %#x at %d; allowed: A-Z a-z 0-9 . _ ~ -", ErrInvalid, c, i)
		}
	}
	return nil
}

// BlockID is the id of block index of volume name: "NAME.%016x".
func BlockID(name string, index int64) string {
	b := make([]byte, 0, len(name)+1+indexDigits)
	b = append(b, name...)
	b = append(b, '.')
	s := strconv.FormatUint(uint64(index), 16)
	for range indexDigits - len(s) {
		b = append(b, '0')
	}
	return string(append(b, s...))
}

// ParseBlockID splits an id made by BlockID; ok is false for any other id.
func ParseBlockID(id string) (name string, index int64, ok bool) {
	if len(id) < indexDigits+2 || id[len(id)-indexDigits-1] != '.' {
		return "", 0, false
	}
	digits := id[len(id)-indexDigits:]
	if strings.ToLower(digits) != digits {
		return "", 0, false
	}
	u, err := strconv.ParseUint(digits, 16, 64)
	if err != nil || u > uint64(MaxSize) {
		return "", 0, false
	}
	return id[:len(id)-indexDigits-1], int64(u), true
}

// sizeUnits are the suffixes ParseSize accepts: binary (KiB...) and
// decimal (kB...), as disk tools print them.
var sizeUnits = []struct {
	suffix string
	mult   int64
}{
	{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"TiB", 1 << 40},
	{"kB", 1e3}, {"KB", 1e3}, {"MB", 1e6}, {"GB", 1e9}, {"TB", 1e12},
	{"K", 1 << 10}, {"M", 1 << 20}, {"G", 1 << 30}, {"T", 1 << 40},
	{"B", 1},
}

// ParseSize reads a size in bytes: "67108864", "64MiB", "64M" (binary, as
// truncate and qemu-img read it), "1GB" (decimal).
func ParseSize(s string) (int64, error) {
	num, mult := strings.TrimSpace(s), int64(1)
	for _, u := range sizeUnits {
		if strings.HasSuffix(num, u.suffix) {
			num, mult = strings.TrimSpace(strings.TrimSuffix(num, u.suffix)), u.mult
			break
		}
	}
	n, err := strconv.ParseInt(num, 10, 64)
	if err != nil || n <= 0 {
		return 0, fmt.Errorf("%w: size %q: want a positive number of bytes, optionally with KiB, MiB, GiB, TiB (or K, M, G, T; kB, MB, GB, TB)", ErrInvalid, s)
	}
	if n > MaxSize/mult {
		return 0, fmt.Errorf("%w: size %q is over 1 PiB", ErrInvalid, s)
	}
	return n * mult, nil
}

// New builds a ready volume record after checking name and size.
func New(name string, size int64, blockSize int, now time.Time) (Volume, error) {
	v := Volume{Name: name, Size: size, BlockSize: blockSize, State: Ready, Created: now.UTC().Truncate(time.Second)}
	return v, v.Validate()
}

// Catalog stores volume records durably for the whole cluster.
type Catalog interface {
	// Create adds v; ErrExists if the name is taken.
	Create(v Volume) error
	// Get returns the record of name; ErrNotFound if none.
	Get(name string) (Volume, error)
	// List returns every record, sorted by name. Records that fail
	// validation are reported in bad (znode name -> reason), not dropped
	// silently.
	List() (vols []Volume, bad map[string]string, err error)
	// SetState changes the state of name; ErrNotFound if none.
	SetState(name, state string) error
	// Delete removes the record of name; ErrNotFound if none.
	Delete(name string) error
}
