package cli

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/goblocks/goblocks/client"
	"github.com/goblocks/goblocks/node/volume"
)

var volumeCommand = command{
	name: "volume", args: "create|ls|rm ...", summary: "volumes: block devices served over NBD",
	help: `Manages volumes, the cluster's block devices. A volume has a name (the
block id alphabet: A-Z a-z 0-9 . _ ~ -) and a size; byte offset o of
volume NAME is stored in block NAME.<o/4096 as 16 hex digits>. Every node
with NBDAddress set serves each volume as the NBD export of that name
(nbd://HOST:10809/NAME: nbdcopy, qemu, fio, nbd-client).

  goblocks volume create -size SIZE NAME   SIZE in bytes or with a unit: 64MiB, 10GiB
  goblocks volume ls                       name, size, state, blocks written
  goblocks volume rm NAME                  delete the volume's blocks, then the volume

Exit code 4 when creating a volume that exists, 3 when the volume to
remove does not exist.`,
	run: runVolume,
}

var volumeCreateCommand = command{
	name: "volume create", args: "-size SIZE NAME", summary: "create a volume",
	help: `Creates volume NAME of SIZE bytes (a multiple of the block size; units
KiB MiB GiB TiB, or K M G T, are binary, kB MB GB TB decimal). Its blocks
read as zeros until written. The record is kept in ZooKeeper, so every
node serves it. Exit code 4 when the name is taken.`,
}

var volumeLsCommand = command{
	name: "volume ls", args: "", summary: "list volumes",
	help: `Lists every volume: name, size, state (deleting while a removal runs)
and blocks written (blocks with data on some member; trimmed and never
written blocks are not counted).`,
}

var volumeRmCommand = command{
	name: "volume rm", args: "NAME", summary: "remove a volume and its blocks",
	help: `Removes volume NAME: it stops accepting new NBD clients, every block of
it that a member holds is deleted (with a progress line), then the
volume's record. Disconnect its clients first: a client still attached
may write blocks after they were deleted. An interrupted removal can be
run again. Exit code 3 when there is no such volume.`,
}

// ExitExists: the volume to create already exists.
const ExitExists = 4

func runVolume(ctx context.Context, cmd *command, e Env, args []string) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		w, code := e.Stdout, ExitOK
		if len(args) == 0 {
			w, code = e.Stderr, ExitUsage
		}
		fmt.Fprintf(w, "usage: goblocks volume create|ls|rm ...\n\n%s\n\n%s\n\n%s\n", cmd.help,
			"Each subcommand takes the common flags (-nodes, -timeout, -token, -ca);\n`goblocks volume SUBCOMMAND -h` lists them.", ExitCodes)
		return code
	}
	sub, rest := args[0], args[1:]
	switch sub {
	case "create":
		return runVolumeCreate(ctx, &volumeCreateCommand, e, rest)
	case "ls", "list":
		return runVolumeLs(ctx, &volumeLsCommand, e, rest)
	case "rm", "remove":
		return runVolumeRm(ctx, &volumeRmCommand, e, rest)
	}
	fmt.Fprintf(e.Stderr, "goblocks volume: unknown subcommand %q (want create, ls or rm)\n", sub)
	return ExitUsage
}

func runVolumeCreate(ctx context.Context, cmd *command, e Env, args []string) int {
	f := newFlags(cmd, e)
	sizeFlag := f.String("size", "", "size in bytes or with a unit (64MiB, 10GiB); required")
	pos, c, code, ok := f.connect(e, args, 1, 1)
	if !ok {
		return code
	}
	defer c.Close()
	if *sizeFlag == "" {
		return f.usageError(e, "-size is required")
	}
	size, err := volume.ParseSize(*sizeFlag)
	if err != nil {
		return f.usageError(e, err.Error())
	}
	v, err := c.CreateVolume(ctx, pos[0], size)
	if errors.Is(err, client.ErrConflict) {
		fmt.Fprintf(e.Stderr, "goblocks volume create: volume %q already exists\n", pos[0])
		return ExitExists
	}
	if err != nil {
		return fail(e, cmd.name, err)
	}
	fmt.Fprintf(e.Stdout, "created volume %s: %s (%d bytes, %d blocks)\n", v.Name, bytesString(v.Size), v.Size, v.Size/int64(v.BlockSize))
	return ExitOK
}

func runVolumeLs(ctx context.Context, cmd *command, e Env, args []string) int {
	f := newFlags(cmd, e)
	_, c, code, ok := f.connect(e, args, 0, 0)
	if !ok {
		return code
	}
	defer c.Close()
	l, err := c.Volumes(ctx)
	if err != nil {
		return fail(e, cmd.name, err)
	}
	tw := newTable(e.Stdout)
	fmt.Fprintln(tw, "NAME\tSIZE\tSTATE\tBLOCKS WRITTEN\tCREATED")
	for _, v := range l.Volumes {
		total := v.Size / int64(max(1, v.BlockSize))
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d of %d\t%s\n", v.Name, bytesString(v.Size), v.State, v.BlocksWritten, total, v.Created.Local().Format(time.DateTime))
	}
	_ = tw.Flush()
	code = ExitOK
	for znode, why := range l.Invalid {
		fmt.Fprintf(e.Stderr, "goblocks volume ls: unreadable volume record %s: %s\n", znode, why)
		code = ExitFailure
	}
	if len(l.Unreachable) > 0 {
		fmt.Fprintf(e.Stderr, "goblocks volume ls: members %v did not answer: blocks written may be undercounted\n", l.Unreachable)
		code = ExitFailure
	}
	return code
}

func runVolumeRm(ctx context.Context, cmd *command, e Env, args []string) int {
	f := newFlags(cmd, e)
	showProgress := f.progressFlag()
	pos, c, code, ok := f.connect(e, args, 1, 1)
	if !ok {
		return code
	}
	defer c.Close()
	name := pos[0]
	var done, total atomic.Int64
	p := startProgress(e.Stderr, showProgress(e), func(elapsed time.Duration) string {
		return fmt.Sprintf("removing %s: %d/%d blocks deleted, %s", name, done.Load(), total.Load(), elapsed.Truncate(time.Second))
	})
	deleted, err := c.RemoveVolume(ctx, name, func(d, t int64) { done.Store(d); total.Store(t) })
	p.finish()
	if errors.Is(err, client.ErrNotFound) {
		fmt.Fprintf(e.Stderr, "goblocks volume rm: no volume %q\n", name)
		return ExitNotFound
	}
	if err != nil {
		return fail(e, "volume rm", err)
	}
	fmt.Fprintf(e.Stdout, "removed volume %s (%d blocks deleted)\n", name, deleted)
	return ExitOK
}
