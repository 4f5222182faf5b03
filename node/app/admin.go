package app

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/pprof"
	rp "runtime/pprof"
	"strconv"

	"github.com/gorilla/mux"

	"github.com/goblocks/goblocks/node/adminapi"
	"github.com/goblocks/goblocks/node/api"
	"github.com/goblocks/goblocks/node/ring"
	"github.com/goblocks/goblocks/node/ui"
)

// The admin endpoints' JSON types (package adminapi, shared with client).
type (
	NodeStatus   = adminapi.NodeStatus
	MemberStatus = adminapi.MemberStatus
	RingStatus   = adminapi.RingStatus
	RingTable    = adminapi.RingTable
	RingMember   = adminapi.RingMember
	RingVNode    = adminapi.RingVNode
)

func (n *Node) adminRoutes(r *mux.Router) {
	r.Handle("/admin/cluster", api.Methods{http.MethodGet: func(w http.ResponseWriter, _ *http.Request) {
		writeAdminJSON(w, n.nodeStatus())
	}})
	r.Handle("/admin/ring", api.Methods{http.MethodGet: func(w http.ResponseWriter, _ *http.Request) {
		writeAdminJSON(w, n.RingStatus())
	}})
	r.Handle("/admin/members", api.Methods{http.MethodGet: func(w http.ResponseWriter, r *http.Request) {
		writeAdminJSON(w, n.memberStatuses(r.Context()))
	}})
	n.volumeRoutes(r)
	// GET /ui: the operator page, drawn from the two endpoints above.
	for path, h := range ui.Pages() {
		r.Handle(path, api.Methods{http.MethodGet: h, http.MethodHead: h})
	}
	// Go profiles, under /admin so AdminToken guards them: CPU
	// (/admin/pprof/profile?seconds=N), execution trace, and the runtime's
	// named profiles (heap, allocs, goroutine, block, mutex, ...).
	r.HandleFunc("/admin/pprof/profile", pprof.Profile)
	r.HandleFunc("/admin/pprof/trace", pprof.Trace)
	r.HandleFunc("/admin/pprof/{name}", func(w http.ResponseWriter, r *http.Request) {
		name := mux.Vars(r)["name"]
		if rp.Lookup(name) == nil {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusNotFound)
			_ = json.NewEncoder(w).Encode(map[string]string{"error": fmt.Sprintf("no profile %q", name), "code": "no_profile"})
			return
		}
		pprof.Handler(name).ServeHTTP(w, r)
	})
}

func (n *Node) nodeStatus() NodeStatus {
	cs := n.ClusterStatus()
	blocks := int64(n.engine.Count())
	stale := min(cs.GC.Stale, blocks)
	if n.driver != nil {
		// Counted as copies are marked and collected, not only at the end
		// of a pass: blocks falls as a pass collects, and owned (their
		// difference) would read low until it ends.
		stale = min(n.driver.StaleNow(), blocks)
	}
	return NodeStatus{ClusterStatus: cs, Addr: n.cfg.AdvertiseAddress(), Blocks: blocks, OwnedBlocks: blocks - stale, StaleBlocks: stale}
}

func writeAdminJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	_ = json.NewEncoder(w).Encode(v)
}

// RingStatus describes the ring this node routes by.
func (n *Node) RingStatus() RingStatus {
	st := RingStatus{Node: n.cfg.ReplicaName, RF: n.cfg.ReplicationFactor}
	v := n.coord.View()
	if v == nil {
		return st
	}
	st.Epoch = n.ClusterStatus().Epoch
	st.Ring = ringTable(v.Current, v.RF)
	if v.Target != nil {
		st.Target = ringTable(v.Target, v.RF)
	}
	return st
}

func ringTable(r *ring.Ring, rf int) *RingTable {
	shares, primary := r.Shares(rf), r.PrimaryShares()
	t := &RingTable{Members: []RingMember{}, VNodes: []RingVNode{}}
	for _, m := range r.Members() {
		t.Members = append(t.Members, RingMember{Name: m.Name, Addr: m.Addr, VNodes: m.VNodes, Share: shares[m.Name], PrimaryShare: primary[m.Name]})
	}
	for _, vn := range r.VNodes() {
		t.VNodes = append(t.VNodes, RingVNode{Token: strconv.FormatUint(vn.Token, 10), Node: vn.Node})
	}
	return t
}
