package app

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"

	"github.com/goblocks/goblocks/node/adminapi"
)

// memberStatusTimeout bounds how long /admin/members waits for a member.
const memberStatusTimeout = 2 * time.Second

// memberStatuses asks every live member for its /admin/cluster (this node
// answers for itself) concurrently, with this node's admin token.
func (n *Node) memberStatuses(ctx context.Context) []adminapi.MemberStatus {
	members := n.ClusterStatus().Members
	out := make([]adminapi.MemberStatus, len(members))
	var wg sync.WaitGroup
	for i, m := range members {
		out[i] = adminapi.MemberStatus{Name: m.Name, Addr: m.Addr, PublicURL: m.PublicURL}
		if m.Name == n.cfg.ReplicaName {
			st := n.nodeStatus()
			out[i].Reachable, out[i].Blocks, out[i].OwnedBlocks, out[i].StaleBlocks, out[i].ViewEpoch =
				true, st.Blocks, st.OwnedBlocks, st.StaleBlocks, st.ViewEpoch
			continue
		}
		wg.Go(func() {
			st, err := n.askMember(ctx, m.Addr)
			if err != nil {
				out[i].Error = err.Error()
				return
			}
			out[i].Reachable, out[i].Blocks, out[i].OwnedBlocks, out[i].StaleBlocks, out[i].ViewEpoch =
				true, st.Blocks, st.OwnedBlocks, st.StaleBlocks, st.ViewEpoch
		})
	}
	wg.Wait()
	return out
}

func (n *Node) askMember(ctx context.Context, addr string) (adminapi.NodeStatus, error) {
	var st adminapi.NodeStatus
	return st, n.askMemberJSON(ctx, addr, "/admin/cluster", memberStatusTimeout, 1<<20, &st)
}

// askMemberJSON GETs path from the member at addr, with this node's admin
// token, and decodes at most limit bytes of JSON into v.
func (n *Node) askMemberJSON(ctx context.Context, addr, path string, timeout time.Duration, limit int64, v any) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	scheme := "http://"
	if n.adminTLS {
		scheme = "https://"
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, scheme+addr+path, nil)
	if err != nil {
		return err
	}
	if n.cfg.AdminToken != "" {
		req.Header.Set("Authorization", "Bearer "+n.cfg.AdminToken)
	}
	resp, err := n.adminHTTP.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %s", path, resp.Status)
	}
	return json.NewDecoder(io.LimitReader(resp.Body, limit)).Decode(v)
}
