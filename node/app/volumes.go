package app

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sort"
	"sync"
	"time"

	"github.com/gorilla/mux"

	"github.com/goblocks/goblocks/node/adminapi"
	"github.com/goblocks/goblocks/node/api"
	"github.com/goblocks/goblocks/node/storage"
	"github.com/goblocks/goblocks/node/volume"
)

// volumeScanTimeout bounds how long a member may take to list the volume
// blocks it holds (a scan of its metadata: ~1.5 s per million records).
const volumeScanTimeout = 30 * time.Second

// maxVolumeBlocksReply bounds a member's answer: ranges, so a volume
// written in long runs needs little whatever its size.
const maxVolumeBlocksReply = 64 << 20

func (n *Node) volumeRoutes(r *mux.Router) {
	r.Handle("/admin/volumes", api.Methods{http.MethodGet: n.listVolumes, http.MethodPost: n.createVolume})
	r.Handle("/admin/volumes/{name}", api.Methods{http.MethodGet: n.getVolume, http.MethodDelete: n.deleteVolume})
	r.Handle("/admin/volumes/{name}/deleting", api.Methods{http.MethodPost: n.markVolumeDeleting})
	r.Handle("/admin/volumes/{name}/written", api.Methods{http.MethodGet: n.volumeWritten})
	r.Handle("/admin/local/volume-blocks", api.Methods{http.MethodGet: n.localVolumeBlocks})
}

// volumeCatalog is the catalog, or ErrNoCatalog on a node without
// ZooKeeper.
func (n *Node) volumeCatalog() (volume.Catalog, error) {
	if n.store == nil {
		return nil, volume.ErrNoCatalog
	}
	return n.store.Volumes(), nil
}

// volumeError writes err as the nodes' JSON error body.
func volumeError(w http.ResponseWriter, err error) {
	status, code := http.StatusServiceUnavailable, "catalog_unavailable"
	switch {
	case errors.Is(err, volume.ErrInvalid):
		status, code = http.StatusBadRequest, "invalid_volume"
	case errors.Is(err, volume.ErrExists):
		status, code = http.StatusConflict, "volume_exists"
	case errors.Is(err, volume.ErrNotFound):
		status, code = http.StatusNotFound, "no_volume"
	case errors.Is(err, errVolumeNotDeleting):
		status, code = http.StatusConflict, "volume_not_deleting"
	case errors.Is(err, volume.ErrNoCatalog):
		status, code = http.StatusNotImplemented, "no_catalog"
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]string{"error": err.Error(), "code": code})
}

var errVolumeNotDeleting = errors.New("volume: not being removed; `goblocks volume rm` deletes its blocks first, then the record")

func (n *Node) createVolume(w http.ResponseWriter, r *http.Request) {
	cat, err := n.volumeCatalog()
	if err != nil {
		volumeError(w, err)
		return
	}
	var req adminapi.VolumeCreate
	dec := json.NewDecoder(io.LimitReader(r.Body, 4096))
	dec.DisallowUnknownFields()
	dec.UseNumber()
	if err := dec.Decode(&req); err != nil {
		volumeError(w, fmt.Errorf("%w: body: %v (want {\"name\": ..., \"size\": bytes or \"64MiB\"})", volume.ErrInvalid, err))
		return
	}
	var size int64
	switch s := req.Size.(type) {
	case json.Number:
		size, err = volume.ParseSize(s.String())
	case string:
		size, err = volume.ParseSize(s)
	default:
		err = fmt.Errorf("%w: size missing or not a number or string", volume.ErrInvalid)
	}
	if err != nil {
		volumeError(w, err)
		return
	}
	v, err := volume.New(req.Name, size, n.cfg.BlockSize, time.Now())
	if err == nil {
		err = cat.Create(v)
	}
	if err != nil {
		volumeError(w, err)
		return
	}
	n.log.Info().Str("volume", v.Name).Int64("size", v.Size).Msg("volume created")
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusCreated)
	_ = json.NewEncoder(w).Encode(volumeStatus(v))
}

func volumeStatus(v volume.Volume) adminapi.Volume {
	return adminapi.Volume{Name: v.Name, Size: v.Size, BlockSize: v.BlockSize, State: v.State, Created: v.Created}
}

// requestedVolume is the catalog and the volume named by the request's
// path.
func (n *Node) requestedVolume(r *http.Request) (volume.Catalog, volume.Volume, error) {
	cat, err := n.volumeCatalog()
	if err != nil {
		return nil, volume.Volume{}, err
	}
	v, err := cat.Get(mux.Vars(r)["name"])
	return cat, v, err
}

func (n *Node) getVolume(w http.ResponseWriter, r *http.Request) {
	_, v, err := n.requestedVolume(r)
	if err != nil {
		volumeError(w, err)
		return
	}
	writeAdminJSON(w, volumeStatus(v))
}

// listVolumes lists the catalog with each volume's written blocks, as the
// members that answer report them.
func (n *Node) listVolumes(w http.ResponseWriter, r *http.Request) {
	cat, err := n.volumeCatalog()
	if err != nil {
		volumeError(w, err)
		return
	}
	vols, bad, err := cat.List()
	if err != nil {
		volumeError(w, err)
		return
	}
	held, unreachable := n.clusterVolumeBlocks(r.Context(), "")
	out := adminapi.VolumeList{Volumes: []adminapi.Volume{}, Invalid: bad, Unreachable: unreachable}
	for _, v := range vols {
		st := volumeStatus(v)
		st.BlocksWritten = held[v.Name].Clip(v.Blocks()).Count()
		out.Volumes = append(out.Volumes, st)
	}
	writeAdminJSON(w, out)
}

// markVolumeDeleting starts a removal: the volume takes no new NBD
// clients from here on. Idempotent, so an interrupted rm can be rerun.
func (n *Node) markVolumeDeleting(w http.ResponseWriter, r *http.Request) {
	cat, v, err := n.requestedVolume(r)
	if err == nil && v.State != volume.Deleting {
		err = cat.SetState(v.Name, volume.Deleting)
		v.State = volume.Deleting
	}
	if err != nil {
		volumeError(w, err)
		return
	}
	n.log.Info().Str("volume", v.Name).Msg("volume removal started")
	writeAdminJSON(w, volumeStatus(v))
}

// volumeWritten lists the blocks of a volume that some member holds data
// for: what `volume rm` must delete.
func (n *Node) volumeWritten(w http.ResponseWriter, r *http.Request) {
	_, v, err := n.requestedVolume(r)
	if err != nil {
		volumeError(w, err)
		return
	}
	held, unreachable := n.clusterVolumeBlocks(r.Context(), v.Name)
	rs := held[v.Name].Clip(v.Blocks())
	if rs == nil {
		rs = volume.Ranges{}
	}
	writeAdminJSON(w, adminapi.VolumeBlocks{Volume: v.Name, Blocks: rs.Count(), Ranges: rs, Unreachable: unreachable})
}

// deleteVolume removes the record of a volume whose removal has started.
func (n *Node) deleteVolume(w http.ResponseWriter, r *http.Request) {
	cat, v, err := n.requestedVolume(r)
	if err == nil && v.State != volume.Deleting {
		err = fmt.Errorf("%w: %s", errVolumeNotDeleting, v.Name)
	}
	if err == nil {
		err = cat.Delete(v.Name)
	}
	if err != nil {
		volumeError(w, err)
		return
	}
	n.log.Info().Str("volume", v.Name).Msg("volume removed")
	w.WriteHeader(http.StatusNoContent)
}

// clusterVolumeBlocks asks every member (this node answers itself) which
// blocks of volume name ("" = every volume) it holds live copies of, and
// merges the answers. Members that do not answer are listed.
func (n *Node) clusterVolumeBlocks(ctx context.Context, name string) (map[string]volume.Ranges, []string) {
	members := n.ClusterStatus().Members
	replies := make([]map[string]volume.Ranges, len(members))
	var unreachable []string
	var mu sync.Mutex
	var wg sync.WaitGroup
	path := "/admin/local/volume-blocks"
	if name != "" {
		path += "?volume=" + name
	}
	for i, m := range members {
		if m.Name == n.cfg.ReplicaName {
			held, err := n.localVolumeRanges(name)
			if err != nil {
				unreachable = append(unreachable, m.Name)
			}
			replies[i] = held
			continue
		}
		wg.Go(func() {
			var got map[string]volume.Ranges
			if err := n.askMemberJSON(ctx, m.Addr, path, volumeScanTimeout, maxVolumeBlocksReply, &got); err != nil {
				n.log.Warn().Err(err).Str("member", m.Name).Msg("volume blocks: member did not answer")
				mu.Lock()
				unreachable = append(unreachable, m.Name)
				mu.Unlock()
				return
			}
			replies[i] = got
		})
	}
	wg.Wait()
	merged := map[string]volume.Ranges{}
	for _, rep := range replies {
		for vol, rs := range rep {
			merged[vol] = volume.Union(merged[vol], rs)
		}
	}
	sort.Strings(unreachable)
	return merged, unreachable
}

// localVolumeBlocks answers clusterVolumeBlocks for this node.
func (n *Node) localVolumeBlocks(w http.ResponseWriter, r *http.Request) {
	name := r.URL.Query().Get("volume")
	if name != "" {
		if err := volume.ValidateName(name); err != nil {
			volumeError(w, err)
			return
		}
	}
	held, err := n.localVolumeRanges(name)
	if err != nil {
		volumeError(w, err)
		return
	}
	writeAdminJSON(w, held)
}

// localVolumeRanges scans this node's metadata for live, owned copies of
// volume blocks (tombstones and stale copies left out).
func (n *Node) localVolumeRanges(name string) (map[string]volume.Ranges, error) {
	idx := map[string][]int64{}
	err := n.engine.Scan("", func(id string, m storage.Meta) bool {
		if m.Tombstone || !m.StaleSince.IsZero() {
			return true
		}
		vol, i, ok := volume.ParseBlockID(id)
		if ok && (name == "" || vol == name) {
			idx[vol] = append(idx[vol], i)
		}
		return true
	})
	out := make(map[string]volume.Ranges, len(idx))
	for vol, is := range idx {
		out[vol] = volume.RangesOf(is)
	}
	return out, err
}

// volumeExports serves the catalog's volumes to NBD clients.
type volumeExports struct {
	n *Node
}

func (e volumeExports) Lookup(_ context.Context, name string) (volume.Volume, error) {
	cat, err := e.n.volumeCatalog()
	if err != nil {
		return volume.Volume{}, err
	}
	v, err := cat.Get(name)
	switch {
	case err != nil:
		return v, err
	case v.State != volume.Ready:
		return v, fmt.Errorf("%w: %s", volume.ErrDeleting, name)
	case v.BlockSize != e.n.cfg.BlockSize:
		return v, fmt.Errorf("%w: volume %s has %d-byte blocks, this cluster %d", volume.ErrInvalid, name, v.BlockSize, e.n.cfg.BlockSize)
	}
	return v, nil
}

func (e volumeExports) List(context.Context) ([]string, error) {
	cat, err := e.n.volumeCatalog()
	if err != nil {
		return nil, err
	}
	vols, _, err := cat.List()
	var names []string
	for _, v := range vols {
		if v.State == volume.Ready {
			names = append(names, v.Name)
		}
	}
	return names, err
}
