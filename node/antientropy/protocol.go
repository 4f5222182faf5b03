package antientropy

// The two internal endpoints (behind the cluster token). Both answer 409
// when the nodes' rings differ or a migration runs.
const (
	// PathDigest: GET ?peer=NAME&ring=ID → DigestResponse.
	PathDigest = "/internal/antientropy/digest"
	// PathIDs: POST IDsRequest → IDsResponse.
	PathIDs = "/internal/antientropy/ids"
)

// MaxIDsRequestBody bounds an IDsRequest body.
const MaxIDsRequestBody = 16 << 10

// MaxIDsResponseBody bounds what a caller reads of an IDsResponse: about
// 200k entries, a 1/64th share of ~13M blocks two nodes share.
const MaxIDsResponseBody = 64 << 20

// DigestResponse carries the bucket digests, index = bucket.
type DigestResponse struct {
	Digests []uint64 `json:"digests"`
}

// IDsRequest asks for the listing of some buckets.
type IDsRequest struct {
	Peer    string `json:"peer"`
	Ring    string `json:"ring"`
	Buckets []int  `json:"buckets"`
}

// IDsResponse is the listing, in id order.
type IDsResponse struct {
	Entries []WireEntry `json:"entries"`
}

// WireEntry is an Entry with its version in the header form
// ("<timestamp>-<node>").
type WireEntry struct {
	ID      string `json:"id"`
	Version string `json:"version"`
}
