package adminapi

import "time"

// Volume is one volume of GET /admin/volumes and GET /admin/volumes/{name}.
type Volume struct {
	Name      string    `json:"name"`
	Size      int64     `json:"size"`
	BlockSize int       `json:"block_size"`
	State     string    `json:"state"` // ready, or deleting while `volume rm` runs
	Created   time.Time `json:"created"`
	// BlocksWritten counts the volume's blocks that have a live copy on
	// some member that answered (GET /admin/volumes only).
	BlocksWritten int64 `json:"blocks_written"`
}

// VolumeList is GET /admin/volumes.
type VolumeList struct {
	Volumes []Volume `json:"volumes"`
	// Invalid names catalog records that could not be read (znode ->
	// reason): somebody wrote garbage there.
	Invalid map[string]string `json:"invalid,omitempty"`
	// Unreachable members did not report their blocks: BlocksWritten may
	// miss blocks only they hold.
	Unreachable []string `json:"unreachable,omitempty"`
}

// VolumeCreate is the body of POST /admin/volumes. Size is bytes, as a
// number or a string with a unit ("64MiB").
type VolumeCreate struct {
	Name string `json:"name"`
	Size any    `json:"size"`
}

// VolumeBlocks lists the blocks of a volume that hold data: GET
// /admin/volumes/{name}/written (all members) and the per-node
// GET /admin/local/volume-blocks/{name}. Ranges are inclusive block index
// ranges [first, last], ascending and disjoint.
type VolumeBlocks struct {
	Volume      string     `json:"volume"`
	Blocks      int64      `json:"blocks"`
	Ranges      [][2]int64 `json:"ranges"`
	Unreachable []string   `json:"unreachable,omitempty"`
}
