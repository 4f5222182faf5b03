package cli

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/goblocks/goblocks/client"
)

var ringCommand = command{
	name: "ring", args: "", summary: "the ring: members, vnodes and each node's share",
	help: `Prints the ring the first reachable node routes by: each member's vnode
count, its share of all replicas and its primary share (the key space it
is first owner of); while a migration runs, the target ring too. -vnodes
lists every token and its node in ring order.`,
	run: runRing,
}

func runRing(ctx context.Context, cmd *command, e Env, args []string) int {
	f := newFlags(cmd, e)
	vnodes := f.Bool("vnodes", false, "also list every vnode token and its node")
	asJSON := f.Bool("json", false, "print GET /admin/ring as JSON")
	_, c, code, ok := f.connect(e, args, 0, 0)
	if !ok {
		return code
	}
	defer c.Close()
	st, err := c.Ring(ctx, "")
	if err != nil {
		return fail(e, cmd.name, err)
	}
	if *asJSON {
		enc := json.NewEncoder(e.Stdout)
		enc.SetIndent("", "  ")
		_ = enc.Encode(st)
		return ExitOK
	}
	fmt.Fprintf(e.Stdout, "view of: %s  epoch: %d  replication factor: %d\n", st.Node, st.Epoch, st.RF)
	if st.Ring == nil {
		fmt.Fprintln(e.Stdout, "no ring yet")
		return ExitOK
	}
	printRing(e, st.Ring, *vnodes)
	if st.Target != nil {
		fmt.Fprintln(e.Stdout, "\ntarget ring (migration running):")
		printRing(e, st.Target, *vnodes)
	}
	return ExitOK
}

func printRing(e Env, r *client.RingTable, vnodes bool) {
	t := newTable(e.Stdout)
	fmt.Fprintln(t, "NAME\tADDR\tVNODES\tSHARE\tPRIMARY")
	for _, m := range r.Members {
		fmt.Fprintf(t, "%s\t%s\t%d\t%.1f%%\t%.1f%%\n", m.Name, m.Addr, m.VNodes, 100*m.Share, 100*m.PrimaryShare)
	}
	_ = t.Flush()
	if !vnodes {
		return
	}
	fmt.Fprintln(e.Stdout)
	t = newTable(e.Stdout)
	fmt.Fprintln(t, "TOKEN\tNODE")
	for _, v := range r.VNodes {
		fmt.Fprintf(t, "%s\t%s\n", v.Token, v.Node)
	}
	_ = t.Flush()
}
