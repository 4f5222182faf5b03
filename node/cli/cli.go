// Package cli holds the goblocks subcommands that talk to a running
// cluster through package client: put, get, rm, status, ring, bench,
// import and export. Each runs in-process from Run with explicit
// streams and environment, and returns its exit code, so tests drive them
// against in-process clusters exactly as main does.
package cli

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/goblocks/goblocks/client"
	"github.com/goblocks/goblocks/node/peertls"
)

// Exit codes of every subcommand.
const (
	ExitOK       = 0 // success
	ExitFailure  = 1 // runtime failure: nodes unreachable or unavailable, I/O error, checksum mismatch
	ExitUsage    = 2 // usage or bad input: unknown flag, wrong arguments, invalid id, wrong block size
	ExitNotFound = 3 // the block (or an import's manifest, or a volume) does not exist
	// ExitExists (4): volume create of a name that is taken.
)

// ExitCodes is the exit-code paragraph of the usage texts.
const ExitCodes = `exit codes: 0 ok, 1 runtime failure (unreachable, unavailable, I/O,
checksum), 2 usage or bad input, 3 block, manifest or volume not found,
4 volume already exists`

// DefaultNodes matches the host ports of `make up` and `make run`.
const DefaultNodes = "127.0.0.1:3001,127.0.0.1:3002,127.0.0.1:3003"

// Env is what a subcommand gets from its process. Getenv may be nil (no
// environment).
type Env struct {
	Stdin          io.Reader
	Stdout, Stderr io.Writer
	Getenv         func(string) string
}

func (e Env) getenv(name string) string {
	if e.Getenv == nil {
		return ""
	}
	return e.Getenv(name)
}

type command struct {
	name    string
	args    string // positional arguments, for the usage line
	summary string // one line, for `goblocks help`
	help    string // what it does, for `goblocks NAME -h`
	// run gets its own command (the table cannot be referenced from the
	// functions it lists: an initialization cycle).
	run func(ctx context.Context, c *command, e Env, args []string) int
}

// commands in the order `goblocks help` lists them.
var commands = []command{
	putCommand, getCommand, rmCommand, statusCommand, ringCommand,
	benchCommand, importCommand, exportCommand, volumeCommand,
}

func lookup(name string) *command {
	for i := range commands {
		if commands[i].name == name {
			return &commands[i]
		}
	}
	return nil
}

// IsCommand reports whether name is one of this package's subcommands.
func IsCommand(name string) bool { return lookup(name) != nil }

// Summary lists the subcommands, one "  name  summary" line each, for the
// top-level usage text.
func Summary() string {
	var b strings.Builder
	for _, c := range commands {
		fmt.Fprintf(&b, "  %-9s %s\n", c.name, c.summary)
	}
	return b.String()
}

// Run runs subcommand name with args (the arguments after its name) and
// returns its exit code. ctx ends long runs (bench, import, export) early.
func Run(ctx context.Context, name string, args []string, e Env) int {
	c := lookup(name)
	if c == nil {
		fmt.Fprintf(e.Stderr, "goblocks: unknown command %q\n", name)
		return ExitUsage
	}
	return c.run(ctx, c, e, args)
}

// flags are the flags every subcommand takes, plus its own.
type flags struct {
	*flag.FlagSet
	cmd         *command
	nodes       string
	timeout     time.Duration
	token       string
	ca          string
	consistency string
	blockSize   int
}

func newFlags(c *command, e Env) *flags {
	f := &flags{FlagSet: flag.NewFlagSet("goblocks "+c.name, flag.ContinueOnError), cmd: c}
	// Parse errors and -h are reported by parse, to the right stream.
	f.SetOutput(io.Discard)
	f.Usage = func() {}
	nodes := e.getenv("GOBLOCKS_NODES")
	if nodes == "" {
		nodes = DefaultNodes
	}
	blockSize := client.DefaultBlockSize
	if v, err := strconv.Atoi(e.getenv("BlockSize")); err == nil {
		blockSize = v
	}
	f.StringVar(&f.nodes, "nodes", nodes, "comma-separated node addresses host:port (env GOBLOCKS_NODES)")
	f.DurationVar(&f.timeout, "timeout", client.DefaultTimeout, "bound of one attempt on one node")
	f.StringVar(&f.token, "token", e.getenv("AdminToken"), "the nodes' AdminToken, sent as a bearer token (env AdminToken; needed by status and ring when set)")
	f.StringVar(&f.ca, "ca", e.getenv("TLSCA"), "PEM CA of a cluster that runs mutual TLS: talk HTTPS and verify the nodes with it (env TLSCA)")
	f.StringVar(&f.consistency, "consistency", "", "one, quorum or all (default: the nodes' configuration)")
	f.IntVar(&f.blockSize, "block-size", blockSize, "the cluster's block size in bytes (env BlockSize)")
	return f
}

// parse parses args, allowing flags after the positional arguments too,
// and checks their count. ok is false when the command must end with
// code: after -h (usage on stdout, 0) or a usage error (stderr, 2).
func (f *flags) parse(e Env, args []string, minArgs, maxArgs int) (pos []string, code int, ok bool) {
	for {
		err := f.Parse(args)
		if errors.Is(err, flag.ErrHelp) {
			f.usage(e.Stdout)
			return nil, ExitOK, false
		}
		if err != nil {
			return nil, f.usageError(e, err.Error()), false
		}
		rest := f.Args()
		if consumed := args[:len(args)-len(rest)]; len(consumed) > 0 && consumed[len(consumed)-1] == "--" {
			pos = append(pos, rest...)
			break
		}
		if len(rest) == 0 {
			break
		}
		pos, args = append(pos, rest[0]), rest[1:]
	}
	switch {
	case len(pos) < minArgs:
		return nil, f.usageError(e, "missing arguments"), false
	case len(pos) > maxArgs:
		return nil, f.usageError(e, fmt.Sprintf("too many arguments: %q", pos[maxArgs:])), false
	}
	return pos, 0, true
}

func (f *flags) usageError(e Env, msg string) int {
	fmt.Fprintf(e.Stderr, "%s: %s\n", f.Name(), msg)
	f.usage(e.Stderr)
	return ExitUsage
}

func (f *flags) usage(w io.Writer) {
	line := strings.TrimSpace(fmt.Sprintf("usage: %s [flags] %s", f.Name(), f.cmd.args))
	fmt.Fprintf(w, "%s\n\n%s\n\nflags:\n", line, strings.TrimSpace(f.cmd.help))
	f.SetOutput(w)
	f.PrintDefaults()
	f.SetOutput(io.Discard)
	fmt.Fprintf(w, "\n%s\n", ExitCodes)
}

// client builds the client from the common flags; an invalid flag value
// is a usage error.
// connect parses the command line and builds the client every command
// but help needs; the caller closes the client.
func (f *flags) connect(e Env, args []string, minArgs, maxArgs int) ([]string, *client.Client, int, bool) {
	pos, code, ok := f.parse(e, args, minArgs, maxArgs)
	if !ok {
		return nil, nil, code, false
	}
	c, code, ok := f.client(e)
	return pos, c, code, ok
}

func (f *flags) client(e Env) (*client.Client, int, bool) {
	var addrs []string
	for a := range strings.SplitSeq(f.nodes, ",") {
		if a = strings.TrimSpace(a); a != "" {
			addrs = append(addrs, a)
		}
	}
	opts := []client.Option{client.WithTimeout(f.timeout), client.WithToken(f.token),
		client.WithConsistency(f.consistency), client.WithBlockSize(f.blockSize)}
	if f.ca != "" {
		pool, err := peertls.LoadCA(f.ca)
		if err != nil {
			return nil, f.usageError(e, err.Error()), false
		}
		opts = append(opts, client.WithTLS(&tls.Config{MinVersion: tls.VersionTLS12, RootCAs: pool}))
	}
	c, err := client.New(addrs, opts...)
	if err != nil {
		return nil, f.usageError(e, err.Error()), false
	}
	return c, 0, true
}

// fail reports err on stderr and returns the exit code it maps to.
func fail(e Env, cmd string, err error) int {
	fmt.Fprintf(e.Stderr, "goblocks %s: %s\n", cmd, strings.TrimPrefix(err.Error(), "goblocks: "))
	return exitCode(err)
}

func exitCode(err error) int {
	switch {
	case err == nil:
		return ExitOK
	case errors.Is(err, client.ErrNotFound):
		return ExitNotFound
	case errors.Is(err, client.ErrBadRequest):
		return ExitUsage
	}
	return ExitFailure
}

// isTerminal reports whether w is a character device (a terminal), where
// a carriage-return progress line makes sense.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

// progressFlag adds -progress; on reports whether to draw: the flag's
// value when given, else whether stderr is a terminal.
func (f *flags) progressFlag() (on func(e Env) bool) {
	p := f.Bool("progress", false, "draw a progress line on stderr (default: when stderr is a terminal)")
	return func(e Env) bool {
		set := false
		f.Visit(func(fl *flag.Flag) { set = set || fl.Name == "progress" })
		if set {
			return *p
		}
		return isTerminal(e.Stderr)
	}
}

func newTable(w io.Writer) *tabwriter.Writer { return tabwriter.NewWriter(w, 0, 0, 2, ' ', 0) }

// bytesString is n in B, KiB, MiB or GiB.
func bytesString(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit && exp < 2; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMG"[exp])
}
