package api

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"sort"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/goblocks/goblocks/node/hlc"
)

// ErrFutureVersion: a peer sent a version too far ahead of this node's
// clock. It is refused (400) so that neither a forged version nor a peer
// with a skewed clock can pin a block to a version no later write beats.
var ErrFutureVersion = errors.New("api: version ahead of this node's clock")

// skewWindow is how long a refused peer counts as "ahead" in /health, and
// how often its refusals are logged.
const skewWindow = time.Minute

// maxTrackedPeers bounds the per-peer state, so a flood from many
// addresses cannot grow it without limit.
const maxTrackedPeers = 1024

// versionGuard admits the versions that arrive on internal endpoints.
// Every refusal is counted; each peer's refusals are logged at most once
// per skewWindow. It is safe for concurrent use.
type versionGuard struct {
	clock   *hlc.Clock
	refused prometheus.Counter
	log     zerolog.Logger
	now     func() time.Time

	mu sync.Mutex
	// ahead holds, per peer address, when it was last refused and by how
	// much it was ahead.
	ahead map[string]skewSeen
}

type skewSeen struct {
	at       time.Time
	by       time.Duration
	loggedAt time.Time
}

func newVersionGuard(clock *hlc.Clock, refused prometheus.Counter, log zerolog.Logger) *versionGuard {
	return &versionGuard{clock: clock, refused: refused, log: log, now: time.Now, ahead: map[string]skewSeen{}}
}

// admit checks v against the clock and moves the clock past it. The
// error wraps ErrFutureVersion (refused) or nil.
func (g *versionGuard) admit(r *http.Request, v hlc.Version) error {
	if g == nil || g.clock == nil {
		return nil
	}
	err := g.clock.Observe(v.Timestamp)
	if err == nil {
		return nil
	}
	g.refused.Inc()
	peer := peerHost(r)
	now := g.now()
	by := v.Timestamp.Physical().Sub(now)
	g.mu.Lock()
	if _, ok := g.ahead[peer]; !ok && len(g.ahead) >= maxTrackedPeers {
		g.expireLocked(now)
		if len(g.ahead) >= maxTrackedPeers {
			g.ahead = map[string]skewSeen{}
		}
	}
	seen := g.ahead[peer]
	logIt := now.Sub(seen.loggedAt) >= skewWindow
	seen.at, seen.by = now, by
	if logIt {
		seen.loggedAt = now
	}
	g.ahead[peer] = seen
	g.mu.Unlock()
	if logIt {
		g.log.Warn().Err(err).Str("peer", peer).Str("version", v.String()).Dur("ahead", by).
			Msg("refusing versions ahead of this node's clock (logged once a minute per peer)")
	}
	return fmt.Errorf("%w: %s from %s: %w", ErrFutureVersion, v, peer, err)
}

func (g *versionGuard) expireLocked(now time.Time) {
	for p, s := range g.ahead {
		if now.Sub(s.at) > skewWindow {
			delete(g.ahead, p)
		}
	}
}

// skew describes the peers refused in the last skewWindow: when several
// peers all look ahead, it is this node's clock that is behind.
type skew struct {
	Peers    []string `json:"peers_ahead"`
	MaxAhead string   `json:"max_ahead"`
}

func (g *versionGuard) recent() *skew {
	if g == nil {
		return nil
	}
	now := g.now()
	g.mu.Lock()
	defer g.mu.Unlock()
	g.expireLocked(now)
	if len(g.ahead) == 0 {
		return nil
	}
	s := &skew{}
	var most time.Duration
	for p, seen := range g.ahead {
		s.Peers = append(s.Peers, p)
		most = max(most, seen.by)
	}
	sort.Strings(s.Peers)
	s.MaxAhead = most.Round(time.Millisecond).String()
	return s
}

func peerHost(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}
