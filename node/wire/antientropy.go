package wire

import "github.com/goblocks/goblocks/node/hlc"

// The anti-entropy exchange (package antientropy): two internal endpoints
// behind the cluster token. Both answer 409 when the nodes' rings differ
// or a migration runs.
const (
	// PathAntiEntropyDigest: GET ?peer=NAME&ring=ID → AntiEntropyDigests.
	PathAntiEntropyDigest = "/internal/antientropy/digest"
	// PathAntiEntropyIDs: POST AntiEntropyIDsRequest → AntiEntropyIDsResponse.
	PathAntiEntropyIDs = "/internal/antientropy/ids"
)

// AntiEntropyBuckets is how many digests one exchange compares. 1024
// keeps a digest response at ~20 KB while a handful of diverged blocks
// lists only a 1/1024th slice of the shared ids per mismatched bucket.
const AntiEntropyBuckets = 1024

// MaxAntiEntropyDigests bounds what a caller reads of a digest response.
const MaxAntiEntropyDigests = AntiEntropyBuckets*22 + 1024

// MaxAntiEntropyIDsRequest bounds an AntiEntropyIDsRequest body.
const MaxAntiEntropyIDsRequest = 16 << 10

// MaxAntiEntropyIDsResponse bounds what a caller reads of an
// AntiEntropyIDsResponse: about 200k entries, a 1/64th share of ~13M
// blocks two nodes share.
const MaxAntiEntropyIDsResponse = 64 << 20

// AntiEntropyDigests carries the bucket digests, index = bucket.
type AntiEntropyDigests struct {
	Digests []uint64 `json:"digests"`
}

// AntiEntropyIDsRequest asks for the listing of some buckets.
type AntiEntropyIDsRequest struct {
	Peer    string `json:"peer"`
	Ring    string `json:"ring"`
	Buckets []int  `json:"buckets"`
}

// AntiEntropyIDsResponse is the listing, in id order.
type AntiEntropyIDsResponse struct {
	Entries []AntiEntropyListed `json:"entries"`
}

// AntiEntropyListed is a VersionedID with its version in the header form
// ("<timestamp>-<node>").
type AntiEntropyListed struct {
	ID      string `json:"id"`
	Version string `json:"version"`
}

// VersionedID is one record of a listing: its id and the version held.
// Tombstones are listed too: a missed delete must propagate like a missed
// write.
type VersionedID struct {
	ID      string
	Version hlc.Version
}
