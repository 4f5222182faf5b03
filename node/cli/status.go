package cli

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
	"sync"

	"github.com/goblocks/goblocks/client"
)

var statusCommand = command{
	name: "status", args: "", summary: "cluster status: members, epoch, migration, blocks per node",
	help: `Asks the first reachable node for its view of the cluster (members, ring
epoch, migration round, participants and transfer progress), then every
member for its health and block count, and prints them as a table.
Members are matched by name, so the -nodes addresses work even when the
members advertise addresses this host cannot reach (the compose lab).
Exit code 1 when no node answers or any member is unhealthy or
unreachable (the table is printed anyway).`,
	run: runStatus,
}

// memberStatus is one row of the status table.
type memberStatus struct {
	Name string `json:"name"`
	Addr string `json:"addr"`
	// PublicURL is where the member says tools reach it (PublicURL).
	PublicURL string             `json:"public_url,omitempty"`
	Health    string             `json:"health"` // ok, unavailable or unreachable
	Error     string             `json:"error,omitempty"`
	Status    *client.NodeStatus `json:"status,omitempty"`
}

func runStatus(ctx context.Context, cmd *command, e Env, args []string) int {
	f := newFlags(cmd, e)
	asJSON := f.Bool("json", false, "print the view and every member's status as JSON")
	_, c, code, ok := f.connect(e, args, 0, 0)
	if !ok {
		return code
	}
	defer c.Close()
	view, err := c.ClusterStatus(ctx, "")
	if err != nil {
		return fail(e, cmd.name, err)
	}
	rows := memberStatuses(ctx, c, view)
	healthy := true
	for _, r := range rows {
		healthy = healthy && r.Health == "ok"
	}
	if *asJSON {
		enc := json.NewEncoder(e.Stdout)
		enc.SetIndent("", "  ")
		_ = enc.Encode(struct {
			View    *client.NodeStatus `json:"view"`
			Members []memberStatus     `json:"members"`
		}{view, rows})
	} else {
		printStatus(e, view, rows)
	}
	if !healthy {
		for _, r := range rows {
			if r.Health != "ok" {
				fmt.Fprintf(e.Stderr, "goblocks status: %s is %s: %s\n", r.Name, r.Health, r.Error)
			}
		}
		return ExitFailure
	}
	return ExitOK
}

// memberStatuses asks the -nodes addresses first, then the advertised
// address of each member none of them turned out to be.
func memberStatuses(ctx context.Context, c *client.Client, view *client.NodeStatus) []memberStatus {
	found := map[string]memberStatus{}
	errs := map[string]string{}
	var mu sync.Mutex
	ask := func(addrs []string) {
		var wg sync.WaitGroup
		for _, a := range addrs {
			wg.Go(func() {
				r := probe(ctx, c, a)
				mu.Lock()
				defer mu.Unlock()
				if r.Status != nil {
					if _, dup := found[r.Status.Node]; !dup {
						found[r.Status.Node] = r
					}
				} else {
					errs[a] = r.Error
				}
			})
		}
		wg.Wait()
	}
	ask(c.Nodes())
	var missing []string
	for _, m := range view.Members {
		if _, ok := found[m.Name]; !ok {
			// Its public URL first: from outside the cluster network
			// (the lab seen from the host) the address may not route.
			if hp := publicHostPort(m.PublicURL); hp != "" {
				missing = append(missing, hp)
			}
			missing = append(missing, m.Addr)
		}
	}
	ask(missing)

	var rows []memberStatus
	seen := map[string]bool{}
	for _, m := range view.Members {
		seen[m.Name] = true
		r, ok := found[m.Name]
		if !ok {
			r = memberStatus{Health: "unreachable", Error: errs[m.Addr]}
		}
		r.Name, r.Addr, r.PublicURL = m.Name, m.Addr, m.PublicURL
		rows = append(rows, r)
	}
	// Nodes that answered but are not (yet) in the view's member list.
	for _, a := range c.Nodes() {
		for name, r := range found {
			if !seen[name] && r.Addr == a {
				seen[name] = true
				r.Name = name
				rows = append(rows, r)
			}
		}
	}
	return rows
}

// publicHostPort is the host:port of an http URL ("" for none or https,
// which the client does not speak without TLS settings).
func publicHostPort(u string) string {
	rest, ok := strings.CutPrefix(u, "http://")
	if !ok {
		return ""
	}
	host, _, _ := strings.Cut(rest, "/")
	if _, _, err := net.SplitHostPort(host); err != nil {
		return host + ":80"
	}
	return host
}

// probe asks one address for its status and health.
func probe(ctx context.Context, c *client.Client, addr string) memberStatus {
	r := memberStatus{Addr: addr}
	st, err := c.ClusterStatus(ctx, addr)
	if err != nil {
		r.Health, r.Error = "unreachable", err.Error()
		return r
	}
	r.Status = st
	h, err := c.Health(ctx, addr)
	switch {
	case err == nil && h.Status == "ok":
		r.Health = "ok"
	case errors.Is(err, client.ErrUnavailable) && h.Status != "":
		r.Health, r.Error = "unavailable", h.Error
	case err != nil:
		r.Health, r.Error = "unreachable", err.Error()
	default:
		r.Health = h.Status
	}
	return r
}

func printStatus(e Env, view *client.NodeStatus, rows []memberStatus) {
	w := e.Stdout
	fmt.Fprintf(w, "view of:    %s (%s)\n", view.Node, view.Addr)
	fmt.Fprintf(w, "epoch:      %d (view epoch %d)\n", view.Epoch, view.ViewEpoch)
	fmt.Fprintf(w, "ring:       %s\n", strings.Join(view.RingMembers, " "))
	fmt.Fprintf(w, "migrating:  %s, pending: %s", yesNo(view.Migrating), yesNo(view.Pending))
	if view.Migrating {
		fmt.Fprintf(w, ", round %s to [%s]", view.Round, strings.Join(view.Target, " "))
	}
	fmt.Fprintln(w)
	if len(view.Participants) > 0 {
		var ps []string
		for _, p := range view.Participants {
			state := "waiting"
			switch {
			case p.Ready:
				state = "ready"
			case p.Registered:
				state = "registered"
			}
			ps = append(ps, fmt.Sprintf("%s %s (sent %d, %s)", p.Name, state, p.SentBlocks, bytesString(p.SentBytes)))
		}
		fmt.Fprintf(w, "participants: %s\n", strings.Join(ps, ", "))
	}
	if lr := view.LastRound; lr != nil {
		fmt.Fprintf(w, "last round: %s to epoch %d in %.1fs, %d blocks (%s)\n", lr.ID, lr.Epoch, lr.Seconds, lr.SentBlocks, bytesString(lr.SentBytes))
	}
	fmt.Fprintln(w)
	t := newTable(w)
	urls := slices.ContainsFunc(rows, func(r memberStatus) bool { return r.PublicURL != "" })
	if urls {
		fmt.Fprint(t, "NAME\tURL\tADDR\tHEALTH\tEPOCH\tOWNED\tSTALE\tTRANSFER\n")
	} else {
		fmt.Fprintln(t, "NAME\tADDR\tHEALTH\tEPOCH\tOWNED\tSTALE\tTRANSFER")
	}
	for _, r := range rows {
		epoch, owned, stale, transfer := "-", "-", "-", "-"
		if st := r.Status; st != nil {
			epoch = fmt.Sprint(st.ViewEpoch)
			owned = fmt.Sprint(st.OwnedBlocks)
			stale = fmt.Sprint(st.StaleBlocks)
			if tr := st.Transfer; st.Migrating || tr.PlannedBlocks+tr.ReceivedBlocks > 0 {
				transfer = fmt.Sprintf("sent %d/%d, received %d", tr.SentBlocks, tr.PlannedBlocks, tr.ReceivedBlocks)
			}
		}
		name := r.Name
		if urls {
			name += "\t" + cmp.Or(r.PublicURL, "-")
		}
		fmt.Fprintf(t, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", name, r.Addr, r.Health, epoch, owned, stale, transfer)
	}
	_ = t.Flush()
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}
