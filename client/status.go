package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"

	"github.com/goblocks/goblocks/node/adminapi"
)

// The JSON of GET /admin/cluster and GET /admin/ring: the types the nodes
// write (package adminapi), so client and node cannot drift apart.
type (
	NodeStatus        = adminapi.NodeStatus
	ClusterStatus     = adminapi.ClusterStatus
	Member            = adminapi.Member
	ParticipantStatus = adminapi.ParticipantStatus
	TransferStatus    = adminapi.TransferStatus
	RoundSummary      = adminapi.RoundSummary
	GCStats           = adminapi.GCStats
	RingStatus        = adminapi.RingStatus
	RingTable         = adminapi.RingTable
	RingMember        = adminapi.RingMember
	RingVNode         = adminapi.RingVNode
)

// Health is GET /health.
type Health struct {
	Status string `json:"status"` // "ok" or "unavailable"
	Node   string `json:"node"`
	Error  string `json:"error,omitempty"`
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
