package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
)

var putCommand = command{
	name: "put", args: "ID FILE|-", summary: "store a block from a file or stdin (exactly one block size)",
	help: `Stores FILE (or stdin for -) as block ID through any node, retrying on
the next node when one is unreachable or unavailable. The input must be
exactly -block-size bytes (4096); use import for files of any size.
Prints the block's new version.`,
	run: runPut,
}

var getCommand = command{
	name: "get", args: "ID [FILE|-]", summary: "fetch a block to a file or stdout",
	help: `Fetches block ID and writes its payload to FILE, or to stdout when FILE
is - or missing. Exit code 3 when the block does not exist.`,
	run: runGet,
}

var rmCommand = command{
	name: "rm", args: "ID", summary: "delete a block",
	help: `Deletes block ID (a versioned tombstone). Deleting a block that does not
exist succeeds.`,
	run: runRm,
}

func runPut(ctx context.Context, cmd *command, e Env, args []string) int {
	f := newFlags(cmd, e)
	pos, c, code, ok := f.connect(e, args, 2, 2)
	if !ok {
		return code
	}
	defer c.Close()
	id, name := pos[0], pos[1]
	data, err := readInput(e, name, int64(f.blockSize))
	if err != nil {
		fmt.Fprintf(e.Stderr, "goblocks put: %v\n", err)
		return inputErrorCode(err)
	}
	if len(data) != f.blockSize {
		fmt.Fprintf(e.Stderr, "goblocks put: %s has %d bytes, want exactly %d (use import for other sizes)\n", name, len(data), f.blockSize)
		return ExitUsage
	}
	version, err := c.Put(ctx, id, data)
	if err != nil {
		return fail(e, cmd.name, err)
	}
	fmt.Fprintln(e.Stdout, version)
	return ExitOK
}

// inputErrorCode: an input file that cannot be opened is bad input; a
// failing read is a runtime failure.
func inputErrorCode(err error) int {
	var pe *fs.PathError
	if errors.As(err, &pe) && pe.Op == "open" {
		return ExitUsage
	}
	return ExitFailure
}

// readInput reads at most limit+1 bytes of name (stdin for "-"): enough to
// tell that the input is too large without reading all of it.
func readInput(e Env, name string, limit int64) ([]byte, error) {
	r := e.Stdin
	if name != "-" {
		f, err := os.Open(name)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		r = f
	}
	if r == nil {
		return nil, errors.New("no stdin")
	}
	return io.ReadAll(io.LimitReader(r, limit+1))
}

func runGet(ctx context.Context, cmd *command, e Env, args []string) int {
	f := newFlags(cmd, e)
	pos, c, code, ok := f.connect(e, args, 1, 2)
	if !ok {
		return code
	}
	defer c.Close()
	data, err := c.Get(ctx, pos[0])
	if err != nil {
		return fail(e, cmd.name, err)
	}
	if len(pos) == 1 || pos[1] == "-" {
		_, err = e.Stdout.Write(data)
	} else {
		err = os.WriteFile(pos[1], data, 0o644)
	}
	if err != nil {
		return fail(e, cmd.name, err)
	}
	return ExitOK
}

func runRm(ctx context.Context, cmd *command, e Env, args []string) int {
	f := newFlags(cmd, e)
	pos, c, code, ok := f.connect(e, args, 1, 1)
	if !ok {
		return code
	}
	defer c.Close()
	if err := c.Delete(ctx, pos[0]); err != nil {
		return fail(e, cmd.name, err)
	}
	return ExitOK
}
