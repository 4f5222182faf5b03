package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
)

// Health is GET /health.
type Health struct {
	Status string `json:"status"` // "ok" or "unavailable"
	Node   string `json:"node"`
	Error  string `json:"error,omitempty"`
}

// NodeStatus is GET /admin/cluster: one node's view of the cluster and
// what it stores itself.
type NodeStatus struct {
	Node   string `json:"node"`
	Addr   string `json:"addr"`
	Blocks int64  `json:"blocks"` // copies stored on this node (owned and stale)
	// OwnedBlocks and StaleBlocks split Blocks as of the node's last GC
	// pass (it runs at every ring swap).
	OwnedBlocks int64    `json:"owned_blocks"`
	StaleBlocks int64    `json:"stale_blocks"`
	Connected   bool     `json:"connected"`
	Members     []Member `json:"members"`
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
}

// ParticipantStatus is one participant of a running migration round.
type ParticipantStatus struct {
	Name       string `json:"name"`
	Registered bool   `json:"registered"`
	Ready      bool   `json:"ready"`
	SentBlocks int64  `json:"sent_blocks"`
	SentBytes  int64  `json:"sent_bytes"`
}

// TransferStatus is a node's transfer progress in the running round.
type TransferStatus struct {
	PlannedBlocks  int64 `json:"planned_blocks"`
	SentBlocks     int64 `json:"sent_blocks"`
	SentBytes      int64 `json:"sent_bytes"`
	ReceivedBlocks int64 `json:"received_blocks"`
	ReceivedBytes  int64 `json:"received_bytes"`
}

// RoundSummary describes the last completed migration round.
type RoundSummary struct {
	ID         string  `json:"id"`
	Epoch      int64   `json:"epoch"`
	Seconds    float64 `json:"seconds"`
	SentBlocks int64   `json:"sent_blocks"`
	SentBytes  int64   `json:"sent_bytes"`
}

// GCStats is the last garbage-collection pass of a node.
type GCStats struct {
	Scanned          int64 `json:"scanned"`
	MarkedStale      int64 `json:"marked_stale"`
	Reowned          int64 `json:"reowned"`
	Collected        int64 `json:"collected"`
	TombstonesPurged int64 `json:"tombstones_purged"`
	Stale            int64 `json:"stale"` // stale copies left after the pass
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

// Health asks node (an address; "" for any of the Client's nodes) for
// /health. A node that is up but refuses requests answers 503: the error
// then unwraps to ErrUnavailable and the Health is filled in too.
func (c *Client) Health(ctx context.Context, node string) (Health, error) {
	var h Health
	resp, err := c.on(node).roundTrip(ctx, http.MethodGet, "/health", "/health", nil)
	if err != nil {
		var e *Error
		if errors.As(err, &e) && e.Status != 0 {
			h.Status, h.Error = "unavailable", e.Message
		}
		return h, err
	}
	if err := json.Unmarshal(resp.body, &h); err != nil {
		return h, fmt.Errorf("goblocks: /health: %w", err)
	}
	return h, nil
}

// ClusterStatus asks node ("" for any) for its view of the cluster.
func (c *Client) ClusterStatus(ctx context.Context, node string) (*NodeStatus, error) {
	var st NodeStatus
	return &st, c.getJSON(ctx, node, "/admin/cluster", &st)
}

// Ring asks node ("" for any) for the ring it routes by.
func (c *Client) Ring(ctx context.Context, node string) (*RingStatus, error) {
	var st RingStatus
	return &st, c.getJSON(ctx, node, "/admin/ring", &st)
}

func (c *Client) getJSON(ctx context.Context, node, path string, v any) error {
	resp, err := c.on(node).roundTrip(ctx, http.MethodGet, path, path, nil)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(resp.body, v); err != nil {
		return fmt.Errorf("goblocks: %s: %w", path, err)
	}
	return nil
}

// on is the client for node: c itself for "" (any node, with retries).
func (c *Client) on(node string) *Client {
	if node == "" {
		return c
	}
	return c.Node(node)
}
