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
	ctx, cancel := context.WithTimeout(ctx, memberStatusTimeout)
	defer cancel()
	scheme := "http://"
	if n.adminTLS {
		scheme = "https://"
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, scheme+addr+"/admin/cluster", nil)
	if err != nil {
		return st, err
	}
	if n.cfg.AdminToken != "" {
		req.Header.Set("Authorization", "Bearer "+n.cfg.AdminToken)
	}
	resp, err := n.adminHTTP.Do(req)
	if err != nil {
		return st, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return st, fmt.Errorf("/admin/cluster: %s", resp.Status)
	}
	err = json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&st)
	return st, err
}
