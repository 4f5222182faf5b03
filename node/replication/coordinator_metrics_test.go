package replication

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/rs/zerolog"

	"github.com/goblocks/goblocks/node/hlc"
	"github.com/goblocks/goblocks/node/ring"
	"github.com/goblocks/goblocks/node/storage"
	"github.com/goblocks/goblocks/node/storage/memory"
)

// This file tests the coordinator's metrics without sockets: a fake Peers
// serves two replicas from memory engines, the coordinator's own replica is
// a memory engine behind the same fault injection, and every case asserts
// the exact delta of every counter (a counter that must not move is
// asserted unchanged).
//
// Identifiers carry an "mx" prefix so they cannot collide with other test
// files of the package.

// mxSelf is the coordinator's own name; it is a ring member, so every read
// asks it first (localFirst) and its corrupt copies take the replaceCorrupt
// path.
const mxSelf = "n1"

var mxMembers = []ring.Member{
	{Name: "n1", Addr: "n1.test:7000", VNodes: ring.DefaultVNodes},
	{Name: "n2", Addr: "n2.test:7000", VNodes: ring.DefaultVNodes},
	{Name: "n3", Addr: "n3.test:7000", VNodes: ring.DefaultVNodes},
}

// mxVer names the version a replica holds, seeded or expected afterwards.
type mxVer int

const (
	mxNone    mxVer = iota // no record
	mxOld                  // mxOldRec
	mxNew                  // mxNewRec
	mxWritten              // the version the case's Put/Delete returned
)

func (v mxVer) String() string {
	return [...]string{"none", "old", "new", "written"}[v]
}

var (
	mxOldRec = storage.NewRecord([]byte("old payload"), hlc.Version{Timestamp: hlc.Timestamp(1_000 << 16), Node: "n2"})
	mxNewRec = storage.NewRecord([]byte("new payload"), hlc.Version{Timestamp: hlc.Timestamp(2_000 << 16), Node: "n3"})
)

// mxFault is what a replica does wrong.
type mxFault int

const (
	mxHealthy mxFault = iota
	// mxDown: every call fails with a plain (non-storage) error.
	mxDown
	// mxCorrupt: the stored payload fails its checksum. Get/Fetch return an
	// error wrapping storage.ErrCorrupt; GetMeta/FetchMeta still answer (the
	// metadata decodes, as in the pebble engine); an Apply of the same or a
	// newer version replaces the bad copy (pebble's Apply does that, so
	// repair can overwrite it) and clears the fault.
	mxCorrupt
	// mxRejectApply: reads work, every Apply fails.
	mxRejectApply
)

var errMxDown = errors.New("fake replica down")

// mxReplica is one replica's local copy with fault injection. The same
// type backs the fake peers and (through mxEngine) the coordinator's own
// engine.
type mxReplica struct {
	name string
	eng  *memory.Engine

	mu          sync.Mutex
	down        bool
	rejectApply bool
	corrupt     bool
	// gate, when non-nil, holds every Apply until it is closed.
	gate chan struct{}
}

func (r *mxReplica) state() (down, reject, corrupt bool, gate chan struct{}) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.down, r.rejectApply, r.corrupt, r.gate
}

func (r *mxReplica) isCorrupt() bool {
	_, _, c, _ := r.state()
	return c
}

func (r *mxReplica) get(id string) (storage.Record, error) {
	down, _, corrupt, _ := r.state()
	switch {
	case down:
		return storage.Record{}, fmt.Errorf("%s: %w", r.name, errMxDown)
	case corrupt:
		return storage.Record{}, fmt.Errorf("%s: block %q payload checksum mismatch: %w", r.name, id, storage.ErrCorrupt)
	}
	return r.eng.Get(id)
}

func (r *mxReplica) getMeta(id string) (storage.Meta, error) {
	if down, _, _, _ := r.state(); down {
		return storage.Meta{}, fmt.Errorf("%s: %w", r.name, errMxDown)
	}
	return r.eng.GetMeta(id)
}

func (r *mxReplica) apply(ctx context.Context, id string, rec storage.Record) (bool, error) {
	down, reject, _, gate := r.state()
	if gate != nil {
		select {
		case <-gate:
		case <-ctx.Done():
			// Close cancels background calls; the test opens the gate
			// before it closes the coordinator, so a call that sees both
			// goes ahead rather than picking one at random.
			select {
			case <-gate:
			default:
				return false, ctx.Err()
			}
		}
	}
	switch {
	case down:
		return false, fmt.Errorf("%s: %w", r.name, errMxDown)
	case reject:
		return false, fmt.Errorf("%s: apply rejected", r.name)
	}
	// Otherwise the call ignores ctx: it completes at once, so a context
	// cancelled by Coordinator.Close (used below as the barrier for
	// background work) does not turn a finished call into a failure.
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.corrupt {
		if meta, err := r.eng.GetMeta(id); err == nil && !meta.Version.Newer(rec.Version) {
			if _, err := r.eng.Remove(id, meta.Version); err != nil {
				return false, err
			}
		}
	}
	ok, err := r.eng.Apply(id, rec)
	if ok {
		r.corrupt = false
	}
	return ok, err
}

func (r *mxReplica) remove(id string, v hlc.Version) (bool, error) {
	if down, _, _, _ := r.state(); down {
		return false, fmt.Errorf("%s: %w", r.name, errMxDown)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	ok, err := r.eng.Remove(id, v)
	if ok {
		r.corrupt = false
	}
	return ok, err
}

// mxEngine is the coordinator's own storage.Engine: the replica's memory
// engine with the replica's faults on the calls the coordinator makes.
type mxEngine struct {
	*memory.Engine
	r *mxReplica
}

func (e mxEngine) Get(id string) (storage.Record, error)         { return e.r.get(id) }
func (e mxEngine) GetMeta(id string) (storage.Meta, error)       { return e.r.getMeta(id) }
func (e mxEngine) Remove(id string, v hlc.Version) (bool, error) { return e.r.remove(id, v) }
func (e mxEngine) Apply(id string, rec storage.Record) (bool, error) {
	return e.r.apply(context.Background(), id, rec)
}

// mxPeers is the fake Peers: one mxReplica per address.
type mxPeers struct {
	byAddr map[string]*mxReplica
	// unknown counts calls to an address that is not a peer (the
	// coordinator's own address included: it must use its engine).
	unknown atomic.Int64
}

func (p *mxPeers) replica(addr string) (*mxReplica, error) {
	r, ok := p.byAddr[addr]
	if !ok {
		p.unknown.Add(1)
		return nil, fmt.Errorf("fake peers: no replica at %q", addr)
	}
	return r, nil
}

func (p *mxPeers) Apply(ctx context.Context, addr, id string, rec storage.Record) (hlc.Version, error) {
	r, err := p.replica(addr)
	if err != nil {
		return hlc.Version{}, err
	}
	ok, err := r.apply(ctx, id, rec)
	if err != nil || ok {
		return rec.Version, err
	}
	m, err := r.eng.GetMeta(id)
	if err != nil {
		return hlc.Version{}, nil
	}
	return m.Version, nil
}

func (p *mxPeers) Fetch(_ context.Context, addr, id string) (storage.Record, error) {
	r, err := p.replica(addr)
	if err != nil {
		return storage.Record{}, err
	}
	return r.get(id)
}

func (p *mxPeers) FetchMeta(_ context.Context, addr, id string) (storage.Meta, error) {
	r, err := p.replica(addr)
	if err != nil {
		return storage.Meta{}, err
	}
	return r.getMeta(id)
}

func (p *mxPeers) FetchDigest(ctx context.Context, addr, id string) (storage.Meta, error) {
	rec, err := p.Fetch(ctx, addr, id)
	return rec.Meta(), err
}

// mxCounts is every counter the coordinator exports.
type mxCounts struct {
	RepairOK, RepairFailed, Dropped, Fallbacks, QuorumWrite, QuorumRead float64
	// Digest: reads whose newest version came as a digest, so the payload
	// was fetched from that replica.
	Digest float64
}

func (a mxCounts) sub(b mxCounts) mxCounts {
	return mxCounts{
		a.RepairOK - b.RepairOK, a.RepairFailed - b.RepairFailed, a.Dropped - b.Dropped,
		a.Fallbacks - b.Fallbacks, a.QuorumWrite - b.QuorumWrite, a.QuorumRead - b.QuorumRead,
		a.Digest - b.Digest,
	}
}

func mxRead(m *Metrics) mxCounts {
	return mxCounts{
		RepairOK:     testutil.ToFloat64(m.Repairs.WithLabelValues("ok")),
		RepairFailed: testutil.ToFloat64(m.Repairs.WithLabelValues("failed")),
		Dropped:      testutil.ToFloat64(m.RepairsDropped),
		Fallbacks:    testutil.ToFloat64(m.Fallbacks),
		QuorumWrite:  testutil.ToFloat64(m.QuorumFailures.WithLabelValues("write")),
		QuorumRead:   testutil.ToFloat64(m.QuorumFailures.WithLabelValues("read")),
		Digest:       testutil.ToFloat64(m.DigestMismatches),
	}
}

// mxFamilyTotals sums every series of each registered family, so a case
// also fails if a counter moves under a label value mxRead does not know.
func mxFamilyTotals(t *testing.T, g prometheus.Gatherer) map[string]float64 {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatalf("gather: %v", err)
	}
	out := make(map[string]float64)
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			out[mf.GetName()] += m.GetCounter().GetValue()
		}
	}
	return out
}

func mxRing(t *testing.T) *ring.Ring {
	t.Helper()
	rg, err := ring.New(mxMembers)
	if err != nil {
		t.Fatalf("ring.New: %v", err)
	}
	return rg
}

// mxReadOrder is the order in which a read at quorum asks the owners of
// id: the coordinator itself, then the other owners in ring order (as
// localFirst does). With RF 3 on 3 members every member owns every block.
func mxReadOrder(rg *ring.Ring, id string) []ring.Member {
	var out []ring.Member
	for _, m := range rg.Owners(id, 3) {
		if m.Name == mxSelf {
			out = append([]ring.Member{m}, out...)
		} else {
			out = append(out, m)
		}
	}
	return out
}

// mxIDs returns two block ids whose second-asked replica differs (n2 for
// one, n3 for the other), so every case runs with both peer orders.
func mxIDs(t *testing.T) []string {
	t.Helper()
	rg := mxRing(t)
	found := map[string]string{}
	for i := 0; len(found) < 2 && i < 10_000; i++ {
		id := fmt.Sprintf("blk-%d", i)
		order := mxReadOrder(rg, id)
		if len(order) != 3 || order[0].Name != mxSelf {
			t.Fatalf("owners of %q: %v", id, order)
		}
		if _, ok := found[order[1].Name]; !ok {
			found[order[1].Name] = id
		}
	}
	if len(found) != 2 {
		t.Fatalf("no ids for both peer orders: %v", found)
	}
	return []string{found["n2"], found["n3"]}
}

// Positions in mxCase arrays follow the read order: 0 is the coordinator's
// own replica, 1 the peer asked together with it at quorum, 2 the peer asked
// only as a fallback (or probed as "unasked" when repair chance is 1). For
// writes the order does not matter: every owner is written.
type mxCase struct {
	name         string
	op           string // "put", "delete" or "get"
	cl           Consistency
	repairChance float64
	seed         [3]mxVer
	faults       [3]mxFault
	// gated holds the Applies of these replicas until all reads are done.
	gated [3]bool
	// fillRepairSlots repeats the read cap(repairSlots)+1 times.
	fillRepairSlots bool
	// background selects ReadRepair Background (default Blocking).
	background bool
	wantErr    error
	want       mxCounts
	// after is what each replica's engine holds once background work is
	// done; stillCorrupt says which corrupt copies must remain unrepaired.
	after        [3]mxVer
	stillCorrupt [3]bool
}

const (
	mxOK = mxHealthy
)

func TestCoordinatorMetrics(t *testing.T) {
	N, O, W, Z := mxNew, mxOld, mxWritten, mxNone
	down, corrupt, reject := mxDown, mxCorrupt, mxRejectApply
	cases := []mxCase{
		// Writes. QuorumFailures has two operation values, "write" and
		// "read": Put and Delete both count as "write".
		{name: "put/all healthy", op: "put", cl: Quorum,
			after: [3]mxVer{W, W, W}},
		{name: "put/one replica down still has quorum", op: "put", cl: Quorum,
			faults: [3]mxFault{mxOK, mxOK, down},
			after:  [3]mxVer{W, W, Z}},
		{name: "put/one replica rejects the apply", op: "put", cl: Quorum,
			faults: [3]mxFault{mxOK, reject, mxOK},
			after:  [3]mxVer{W, Z, W}},
		{name: "put/two peers down", op: "put", cl: Quorum,
			faults:  [3]mxFault{mxOK, down, down},
			wantErr: ErrUnavailable, want: mxCounts{QuorumWrite: 1},
			after: [3]mxVer{Z, Z, Z}}, // the version query fails first: nothing is written
		{name: "put/own engine and one peer down", op: "put", cl: Quorum,
			faults:  [3]mxFault{down, mxOK, down},
			wantErr: ErrUnavailable, want: mxCounts{QuorumWrite: 1},
			after: [3]mxVer{Z, Z, Z}},
		{name: "put/consistency all with one down", op: "put", cl: All,
			faults:  [3]mxFault{mxOK, mxOK, down},
			wantErr: ErrUnavailable, want: mxCounts{QuorumWrite: 1},
			after: [3]mxVer{Z, Z, Z}},
		{name: "delete/all healthy", op: "delete", cl: Quorum,
			seed:  [3]mxVer{N, N, N},
			after: [3]mxVer{W, W, W}},
		{name: "delete/two peers down", op: "delete", cl: Quorum,
			seed:    [3]mxVer{N, N, N},
			faults:  [3]mxFault{mxOK, down, down},
			wantErr: ErrUnavailable, want: mxCounts{QuorumWrite: 1},
			after: [3]mxVer{N, N, N}},

		// Reads, healthy.
		{name: "get/consistent, no repair chance", op: "get", cl: Quorum,
			seed: [3]mxVer{N, N, N}, after: [3]mxVer{N, N, N}},
		{name: "get/consistent, probe of the unasked owner", op: "get", cl: Quorum, repairChance: 1,
			seed: [3]mxVer{N, N, N}, after: [3]mxVer{N, N, N}},
		{name: "get/consistent at all", op: "get", cl: All,
			seed: [3]mxVer{N, N, N}, after: [3]mxVer{N, N, N}},
		{name: "get/nothing stored", op: "get", cl: Quorum, repairChance: 1,
			wantErr: storage.ErrNotFound},

		// Fallbacks.
		{name: "get/read-set peer down", op: "get", cl: Quorum,
			seed: [3]mxVer{N, N, N}, faults: [3]mxFault{mxOK, down, mxOK},
			want:  mxCounts{Fallbacks: 1},
			after: [3]mxVer{N, N, N}},
		{name: "get/own engine down", op: "get", cl: Quorum,
			seed: [3]mxVer{N, N, N}, faults: [3]mxFault{down, mxOK, mxOK},
			want:  mxCounts{Fallbacks: 1},
			after: [3]mxVer{N, N, N}},
		{name: "get/read-set peer down, fallback replica stale", op: "get", cl: Quorum,
			seed: [3]mxVer{N, N, O}, faults: [3]mxFault{mxOK, down, mxOK},
			want:  mxCounts{Fallbacks: 1, RepairOK: 1},
			after: [3]mxVer{N, N, N}},
		{name: "get/unasked peer down is never asked", op: "get", cl: Quorum, repairChance: 0,
			seed: [3]mxVer{N, N, N}, faults: [3]mxFault{mxOK, mxOK, down},
			after: [3]mxVer{N, N, N}},
		{name: "get/unasked peer down fails its probe silently", op: "get", cl: Quorum, repairChance: 1,
			seed: [3]mxVer{N, N, N}, faults: [3]mxFault{mxOK, mxOK, down},
			after: [3]mxVer{N, N, N}},

		// Read repair.
		{name: "get/stale peer in read set", op: "get", cl: Quorum,
			seed:  [3]mxVer{N, O, N},
			want:  mxCounts{RepairOK: 1},
			after: [3]mxVer{N, N, N}},
		{name: "get/peer in read set missing the block", op: "get", cl: Quorum,
			seed:  [3]mxVer{N, Z, N},
			want:  mxCounts{RepairOK: 1},
			after: [3]mxVer{N, N, N}},
		// The own replica sends the payload, the peer a digest: the
		// digest is newer, so the payload comes from that peer.
		{name: "get/stale own replica", op: "get", cl: Quorum,
			seed:  [3]mxVer{O, N, N},
			want:  mxCounts{RepairOK: 1, Digest: 1},
			after: [3]mxVer{N, N, N}},
		{name: "get/stale unasked peer, no repair chance", op: "get", cl: Quorum, repairChance: 0,
			seed:  [3]mxVer{N, N, O},
			after: [3]mxVer{N, N, O}},
		{name: "get/stale unasked peer, repair chance 1", op: "get", cl: Quorum, repairChance: 1,
			seed:  [3]mxVer{N, N, O},
			want:  mxCounts{RepairOK: 1},
			after: [3]mxVer{N, N, N}},
		{name: "get/two stale peers", op: "get", cl: Quorum, repairChance: 1,
			seed:  [3]mxVer{N, O, Z},
			want:  mxCounts{RepairOK: 2},
			after: [3]mxVer{N, N, N}},
		{name: "get/stale peer at all", op: "get", cl: All,
			seed:  [3]mxVer{N, N, O},
			want:  mxCounts{RepairOK: 1},
			after: [3]mxVer{N, N, N}},
		// The read set disagrees, so the newest version must reach a
		// quorum before the read answers: the rejected rewrite is covered
		// by the owner the read did not ask (it already holds it: "ok").
		{name: "get/repair to a peer that rejects it", op: "get", cl: Quorum,
			seed: [3]mxVer{N, O, N}, faults: [3]mxFault{mxOK, reject, mxOK},
			want:  mxCounts{RepairFailed: 1, RepairOK: 1},
			after: [3]mxVer{N, O, N}},
		{name: "get/probe repair to a peer that rejects it", op: "get", cl: Quorum, repairChance: 1,
			seed: [3]mxVer{N, N, O}, faults: [3]mxFault{mxOK, mxOK, reject},
			want:  mxCounts{RepairFailed: 1},
			after: [3]mxVer{N, N, O}},

		// Corrupt copies: a corrupt reply counts as a missing copy, the
		// read asks one more replica (a fallback) and repairs the corrupt one.
		{name: "get/corrupt peer in read set", op: "get", cl: Quorum,
			seed: [3]mxVer{N, N, N}, faults: [3]mxFault{mxOK, corrupt, mxOK},
			want:  mxCounts{Fallbacks: 1, RepairOK: 1},
			after: [3]mxVer{N, N, N}},
		{name: "get/corrupt peer holding an older version", op: "get", cl: Quorum,
			seed: [3]mxVer{N, O, N}, faults: [3]mxFault{mxOK, corrupt, mxOK},
			want:  mxCounts{Fallbacks: 1, RepairOK: 1},
			after: [3]mxVer{N, N, N}},
		{name: "get/corrupt own replica", op: "get", cl: Quorum,
			seed: [3]mxVer{N, N, N}, faults: [3]mxFault{corrupt, mxOK, mxOK},
			want:  mxCounts{Fallbacks: 1, RepairOK: 1},
			after: [3]mxVer{N, N, N}},

		// Read quorum failures.
		{name: "get/two peers down", op: "get", cl: Quorum,
			seed: [3]mxVer{N, N, N}, faults: [3]mxFault{mxOK, down, down},
			wantErr: ErrUnavailable, want: mxCounts{Fallbacks: 1, QuorumRead: 1},
			after: [3]mxVer{N, N, N}},
		{name: "get/consistency all with one down", op: "get", cl: All,
			seed: [3]mxVer{N, N, N}, faults: [3]mxFault{mxOK, mxOK, down},
			wantErr: ErrUnavailable, want: mxCounts{QuorumRead: 1},
			after: [3]mxVer{N, N, N}},
		// At ALL a corrupt copy raises the need to 4 of 3: the read fails,
		// but the copies it did read still repair the corrupt one.
		{name: "get/consistency all with a corrupt peer", op: "get", cl: All,
			seed: [3]mxVer{N, N, N}, faults: [3]mxFault{mxOK, corrupt, mxOK},
			wantErr: ErrUnavailable, want: mxCounts{QuorumRead: 1, RepairOK: 1},
			after: [3]mxVer{N, N, N}},
		{name: "get/corrupt peer and fallback peer down", op: "get", cl: Quorum,
			seed: [3]mxVer{N, N, N}, faults: [3]mxFault{mxOK, corrupt, down},
			wantErr: ErrUnavailable, want: mxCounts{Fallbacks: 1, QuorumRead: 1, RepairOK: 1},
			after: [3]mxVer{N, N, N}},

		// Dropped repairs. Deterministic: a repair takes its slot
		// synchronously inside Get and keeps it until its Apply returns, so
		// with the stale peer's Applies held, the first cap(repairSlots)
		// reads fill every slot and the next read's repair is dropped. Once
		// released, every held repair succeeds (the first one applies, the
		// others find the version already there: Apply reports no error),
		// so one lagging replica counts cap(repairSlots) "ok" repairs.
		{name: "get/repair dropped when every slot is busy", op: "get", cl: Quorum, background: true,
			seed: [3]mxVer{N, O, N}, gated: [3]bool{false, true, false}, fillRepairSlots: true,
			want:  mxCounts{RepairOK: 64, Dropped: 1},
			after: [3]mxVer{N, N, N}},
	}
	ids := mxIDs(t)
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			for _, id := range ids {
				t.Run(id, func(t *testing.T) { mxRun(t, tc, id) })
			}
		})
	}
}

func mxRun(t *testing.T, tc mxCase, id string) {
	rg := mxRing(t)
	order := mxReadOrder(rg, id)
	reps := make([]*mxReplica, len(order))
	peers := &mxPeers{byAddr: map[string]*mxReplica{}}
	var gates []chan struct{}
	for i, m := range order {
		r := &mxReplica{name: m.Name, eng: memory.New()}
		switch tc.seed[i] {
		case mxOld:
			mxMustApply(t, r.eng, id, mxOldRec)
		case mxNew:
			mxMustApply(t, r.eng, id, mxNewRec)
		}
		switch tc.faults[i] {
		case mxDown:
			r.down = true
		case mxCorrupt:
			r.corrupt = true
		case mxRejectApply:
			r.rejectApply = true
		}
		if tc.gated[i] {
			r.gate = make(chan struct{})
			gates = append(gates, r.gate)
		}
		reps[i] = r
		if m.Name != mxSelf {
			peers.byAddr[m.Addr] = r
		}
	}
	openGates := func() {
		for _, g := range gates {
			close(g)
		}
		gates = nil
	}

	reg := prometheus.NewRegistry()
	metrics := NewMetrics(reg)
	c := New(Options{
		Self:             mxSelf,
		Engine:           mxEngine{Engine: reps[0].eng, r: reps[0]},
		Peers:            peers,
		Clock:            hlc.NewClock(nil, 0),
		ReadConsistency:  Quorum,
		WriteConsistency: Quorum,
		ReadRepairChance: tc.repairChance,
		ReplicaTimeout:   30 * time.Second,
		Logger:           zerolog.Nop(),
		Metrics:          metrics,
		ReadRepair:       map[bool]ReadRepairMode{false: Blocking, true: Background}[tc.background],
	})
	closed := false
	t.Cleanup(func() {
		if !closed {
			openGates()
			c.Close()
		}
	})
	c.SetView(ring.View{Current: rg, RF: 3})

	before, beforeTotals := mxRead(metrics), mxFamilyTotals(t, reg)
	ctx := context.Background()
	var written hlc.Version
	switch tc.op {
	case "put", "delete":
		var err error
		if tc.op == "put" {
			written, err = c.Put(ctx, id, []byte("written payload"), tc.cl)
		} else {
			written, err = c.Delete(ctx, id, tc.cl)
		}
		if !mxErrIs(err, tc.wantErr) {
			t.Fatalf("%s: err = %v, want %v", tc.op, err, tc.wantErr)
		}
	case "get":
		reads := 1
		if tc.fillRepairSlots {
			reads = cap(c.repairSlots) + 1
			if want := float64(cap(c.repairSlots)); tc.want.RepairOK != want {
				t.Fatalf("case expects %v ok repairs, but the coordinator has %v repair slots", tc.want.RepairOK, want)
			}
		}
		for i := range reads {
			rec, err := c.Get(ctx, id, tc.cl)
			if !mxErrIs(err, tc.wantErr) {
				t.Fatalf("get #%d: err = %v, want %v", i+1, err, tc.wantErr)
			}
			if tc.wantErr == nil && (rec.Version != mxNewRec.Version || string(rec.Data) != string(mxNewRec.Data)) {
				t.Fatalf("get #%d = %s %q, want %s %q", i+1, rec.Version, rec.Data, mxNewRec.Version, mxNewRec.Data)
			}
		}
	default:
		t.Fatalf("unknown op %q", tc.op)
	}

	// Close waits for every background call (the writes beyond the quorum,
	// probes, repairs). Its cancellation cannot fail them: the fake calls
	// complete at once and do not look at ctx, and the held ones are
	// released first.
	openGates()
	c.Close()
	closed = true

	got := mxRead(metrics).sub(before)
	if got != tc.want {
		t.Errorf("metric deltas:\n got %+v\nwant %+v", got, tc.want)
	}
	afterTotals := mxFamilyTotals(t, reg)
	for name, want := range map[string]float64{
		"blocks_read_repairs_total":           tc.want.RepairOK + tc.want.RepairFailed,
		"blocks_read_repairs_dropped_total":   tc.want.Dropped,
		"blocks_read_fallbacks_total":         tc.want.Fallbacks,
		"blocks_quorum_failures_total":        tc.want.QuorumWrite + tc.want.QuorumRead,
		"blocks_read_digest_mismatches_total": tc.want.Digest,
	} {
		if d := afterTotals[name] - beforeTotals[name]; d != want {
			t.Errorf("%s summed over all labels moved by %v, want %v", name, d, want)
		}
	}
	if n := peers.unknown.Load(); n != 0 {
		t.Errorf("%d peer calls to an address that is not a peer", n)
	}

	for i, r := range reps {
		hold := mxHolds(t, r.eng, id, written, tc.op == "delete")
		if hold != tc.after[i] {
			t.Errorf("replica %d (%s, fault %d): holds %s, want %s", i, r.name, tc.faults[i], hold, tc.after[i])
		}
		if c := r.isCorrupt(); c != tc.stillCorrupt[i] {
			t.Errorf("replica %d (%s): corrupt = %v, want %v", i, r.name, c, tc.stillCorrupt[i])
		}
	}
}

func mxErrIs(err, want error) bool {
	if want == nil {
		return err == nil
	}
	return errors.Is(err, want)
}

func mxMustApply(t *testing.T, e storage.Engine, id string, rec storage.Record) {
	t.Helper()
	if ok, err := e.Apply(id, rec); err != nil || !ok {
		t.Fatalf("seed %q: applied %v, %v", id, ok, err)
	}
}

// mxHolds reads a replica's engine directly (no faults) and names what it
// holds; written is the version of the case's write, a tombstone when
// tombstone is set.
func mxHolds(t *testing.T, e *memory.Engine, id string, written hlc.Version, tombstone bool) mxVer {
	t.Helper()
	rec, err := e.Get(id)
	switch {
	case errors.Is(err, storage.ErrNotFound):
		return mxNone
	case err != nil:
		t.Fatalf("read back %q: %v", id, err)
	}
	for v, want := range map[mxVer]storage.Record{mxOld: mxOldRec, mxNew: mxNewRec} {
		if rec.Version == want.Version {
			if string(rec.Data) != string(want.Data) || rec.Tombstone {
				t.Errorf("read back %q at %s: data %q, tombstone %v", id, rec.Version, rec.Data, rec.Tombstone)
			}
			return v
		}
	}
	if !written.IsZero() && rec.Version == written {
		if rec.Tombstone != tombstone {
			t.Errorf("read back %q at %s: tombstone %v, want %v", id, rec.Version, rec.Tombstone, tombstone)
		}
		return mxWritten
	}
	t.Fatalf("read back %q: unexpected version %s", id, rec.Version)
	return mxNone
}
