// Package adminapi is the JSON contract of a node's operator endpoints,
// GET /admin/cluster and GET /admin/ring: defined once, written by the node
// and read by package client (and the CLI), so the two cannot drift. It
// holds types only and imports nothing of the node.
package adminapi

// NodeStatus is GET /admin/cluster: one node's view of the cluster plus
// what it stores itself, so a client can build a per-node table by asking
// each member.
type NodeStatus struct {
	ClusterStatus
	Addr   string `json:"addr"`
	Blocks int64  `json:"blocks"` // copies stored here (owned and stale)
	// OwnedBlocks and StaleBlocks split Blocks: stale copies moved away
	// (marked by the GC pass that runs at every ring swap) and are
	// collected when the grace period ends; both move as a pass marks and
	// collects.
	OwnedBlocks int64 `json:"owned_blocks"`
	StaleBlocks int64 `json:"stale_blocks"`
}

// ClusterStatus is the node's view of membership, ring and migration.
type ClusterStatus struct {
	Node      string   `json:"node"`
	Connected bool     `json:"connected"`
	Members   []Member `json:"members"`
	// RingMembers are the nodes of the committed ring (they own data);
	// Members also lists nodes that joined but own nothing yet.
	RingMembers  []string            `json:"ring_members"`
	Epoch        int64               `json:"epoch"`
	ViewEpoch    int64               `json:"view_epoch"`
	Migrating    bool                `json:"migrating"`
	Pending      bool                `json:"pending"`
	Round        string              `json:"round,omitempty"`
	Target       []string            `json:"target,omitempty"`
	Participants []ParticipantStatus `json:"participants"`
	Transfer     TransferStatus      `json:"transfer"`
	LastRound    *RoundSummary       `json:"last_round,omitempty"`
	// RoundsAborted counts rounds this node aborted (a participant died).
	RoundsAborted int64   `json:"rounds_aborted"`
	GC            GCStats `json:"gc"`
	Leaving       bool    `json:"leaving"`
}

// Member is a live node as the membership sees it.
type Member struct {
	Name    string `json:"name"`
	Addr    string `json:"addr"`
	VNodes  int    `json:"vnodes"`
	Leaving bool   `json:"leaving,omitempty"`
	// PublicURL is where a browser or a tool outside the cluster network
	// reaches the member (its PublicURL setting), if it has one.
	PublicURL string `json:"public_url,omitempty"`
}

// ParticipantStatus is one participant of a running migration round: its
// registration, readiness and what it sent.
type ParticipantStatus struct {
	Name       string `json:"name"`
	Registered bool   `json:"registered"`
	Ready      bool   `json:"ready"`
	SentBlocks int64  `json:"sent_blocks"`
	SentBytes  int64  `json:"sent_bytes"`
}

// TransferStatus is a node's transfer progress in the running round (kept
// after it ends, until the next one).
type TransferStatus struct {
	PlannedBlocks  int64 `json:"planned_blocks"`
	SentBlocks     int64 `json:"sent_blocks"`
	SentBytes      int64 `json:"sent_bytes"`
	ReceivedBlocks int64 `json:"received_blocks"`
	ReceivedBytes  int64 `json:"received_bytes"`
}

// RoundSummary describes the last round this node saw commit.
type RoundSummary struct {
	ID         string  `json:"id"`
	Epoch      int64   `json:"epoch"`
	Seconds    float64 `json:"seconds"`
	SentBlocks int64   `json:"sent_blocks"`
	SentBytes  int64   `json:"sent_bytes"`
}

// GCStats counts one garbage-collection pass.
type GCStats struct {
	Scanned          int64 `json:"scanned"`
	MarkedStale      int64 `json:"marked_stale"`
	Reowned          int64 `json:"reowned"`
	Collected        int64 `json:"collected"`
	TombstonesPurged int64 `json:"tombstones_purged"`
	Stale            int64 `json:"stale"` // stale copies left after the pass
	// Pass is why it ran: periodic (reads every record), swap or expiry
	// (read only the arcs a ring change moved); Seconds how long it took.
	Pass    string  `json:"pass,omitempty"`
	Seconds float64 `json:"seconds"`
}

// RingStatus is GET /admin/ring: the ring a node routes by, and the target
// ring while a migration runs.
type RingStatus struct {
	Node   string     `json:"node"`
	Epoch  int64      `json:"epoch"`
	RF     int        `json:"rf"`
	Ring   *RingTable `json:"ring"`
	Target *RingTable `json:"target,omitempty"`
}

// RingTable lists a ring's members and every vnode token.
type RingTable struct {
	Members []RingMember `json:"members"`
	VNodes  []RingVNode  `json:"vnodes"`
}

// RingMember is one node of a RingTable. Share is the fraction of all
// replicas it holds (the shares sum to 1); PrimaryShare the fraction of
// the key space it is the first owner of.
type RingMember struct {
	Name         string  `json:"name"`
	Addr         string  `json:"addr"`
	VNodes       int     `json:"vnodes"`
	Share        float64 `json:"share"`
	PrimaryShare float64 `json:"primary_share"`
}

// RingVNode is one token (a decimal string: JSON numbers lose precision
// past 2^53) and the node that owns it.
type RingVNode struct {
	Token string `json:"token"`
	Node  string `json:"node"`
}

// MemberStatus is one member's entry of GET /admin/members: what the node
// serving it learned from that member's /admin/cluster, so one page (or
// one request) shows every member's blocks without reaching each node.
type MemberStatus struct {
	Name        string `json:"name"`
	Addr        string `json:"addr"`
	PublicURL   string `json:"public_url,omitempty"`
	Reachable   bool   `json:"reachable"`
	Blocks      int64  `json:"blocks"`
	OwnedBlocks int64  `json:"owned_blocks"`
	StaleBlocks int64  `json:"stale_blocks"`
	ViewEpoch   int64  `json:"view_epoch"`
	// Error says why the member did not answer (Reachable false).
	Error string `json:"error,omitempty"`
}
