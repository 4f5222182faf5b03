// Command goblocks is the goblocks node and its tools.
//
//	goblocks [node] [flags]   run a storage node (the default)
//	goblocks health [-addr]   probe a node's /health (container HEALTHCHECK)
//	goblocks gateway [flags]  the lab's port gateway: node-N on port 300N (package node/gateway)
//	goblocks version
//	goblocks put|get|rm|status|ring|bench|import|export ...   cluster tools (package node/cli)
//
// Exit codes: 0 success, 1 runtime failure, 2 invalid configuration or
// usage, 3 block not found (cluster tools).
package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/rs/zerolog"

	"github.com/goblocks/goblocks/node/app"
	"github.com/goblocks/goblocks/node/cli"
	"github.com/goblocks/goblocks/node/config"
	"github.com/goblocks/goblocks/node/peertls"
	"github.com/goblocks/goblocks/node/slot"
)

var version = "dev"

func main() {
	os.Exit(run(os.Args[1:], os.Getenv, os.Stdin, os.Stdout, os.Stderr))
}

func run(args []string, getenv func(string) string, stdin io.Reader, stdout, stderr io.Writer) int {
	cmd := "node"
	if len(args) > 0 {
		switch args[0] {
		case "-h", "-help", "--help", "--h":
			// The commands, not the node's flags: 'goblocks node -h' has those.
			usage(stdout)
			return 0
		}
	}
	if len(args) > 0 && len(args[0]) > 0 && args[0][0] != '-' {
		cmd, args = args[0], args[1:]
	}
	switch cmd {
	case "node":
		return runNode(args, getenv, stderr)
	case "health":
		return runHealth(args, getenv, stdout, stderr)
	case "gateway":
		return runGateway(args, getenv, stderr)
	case "version":
		fmt.Fprintln(stdout, "goblocks", version)
		return 0
	case "help":
		usage(stdout)
		return 0
	}
	if cli.IsCommand(cmd) {
		// Ctrl-C ends a bench, import or export early (bench still
		// prints its summary).
		ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
		defer stop()
		return cli.Run(ctx, cmd, args, cli.Env{Stdin: stdin, Stdout: stdout, Stderr: stderr, Getenv: getenv})
	}
	fmt.Fprintf(stderr, "goblocks: unknown command %q\n", cmd)
	usage(stderr)
	return 2
}

func usage(w io.Writer) {
	fmt.Fprint(w, `usage: goblocks [command] [flags] [arguments]

commands:
  node      run a storage node (default; see 'goblocks node -h')
  health    check a node's /health; exit 0 when healthy
  gateway   publish a scaled service's nodes on ports matching their names (the lab)
  version   print the version

cluster tools (see 'goblocks COMMAND -h'; nodes from -nodes or
GOBLOCKS_NODES, default `+cli.DefaultNodes+`):
`+cli.Summary()+`
exit codes: 0 ok, 1 runtime failure, 2 invalid configuration or usage,
3 block, manifest or volume not found, 4 volume exists (cluster tools)
`)
}

func runNode(args []string, getenv func(string) string, stderr io.Writer) int {
	cfg, err := config.Load(args, getenv, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintf(stderr, "goblocks: %v\n", err)
		return 2
	}
	level, err := zerolog.ParseLevel(cfg.LogLevel)
	if err != nil {
		fmt.Fprintf(stderr, "goblocks: LogLevel %q: %v\n", cfg.LogLevel, err)
		return 2
	}
	cfg.Version = version
	log := zerolog.New(stderr).Level(level).With().Timestamp().Logger()
	if cfg.ClaimSlot != "" {
		s, err := slot.Claim(cfg.DataDir, cfg.ClaimSlot, replicaNumber(cfg.ReplicaAddress))
		if err != nil {
			log.Error().Err(err).Msg("start failed")
			return 1
		}
		defer s.Release()
		cfg.DataDir = s.Dir
		if cfg.ReplicaName == "" {
			cfg.ReplicaName = s.Name
		}
		log.Info().Str("slot", s.Name).Str("data_dir", s.Dir).Msg("claimed slot")
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	n, err := app.New(cfg, nil, log)
	if err != nil {
		log.Error().Err(err).Msg("start failed")
		return 1
	}
	if err := n.Run(ctx); err != nil {
		log.Error().Err(err).Msg("node failed")
		return 1
	}
	return 0
}

// replicaNumber is the number Compose gave this container, read from the
// name Docker's DNS has for its address (0 when there is none: not in
// Compose, or no reverse record).
func replicaNumber(addr string) int {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		host = addr
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	names, err := slot.ContainerNames(ctx, host)
	if err != nil || len(names) == 0 {
		return 0
	}
	return slot.ReplicaNumber(names[0])
}

// runHealth is the container health check: scratch images have no curl.
func runHealth(args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("goblocks health", flag.ContinueOnError)
	fs.SetOutput(stderr)
	port := getenv("port")
	if port == "" {
		port = "3000"
	}
	addr := fs.String("addr", "127.0.0.1:"+port, "node address host:port")
	timeout := fs.Duration("timeout", 3*time.Second, "request timeout")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	client := &http.Client{Timeout: *timeout}
	scheme := "http://"
	if ca := getenv("TLSCA"); ca != "" {
		tr, err := healthTLS(ca)
		if err != nil {
			fmt.Fprintf(stderr, "unhealthy: %v\n", err)
			return 1
		}
		client.Transport, scheme = tr, "https://"
	}
	resp, err := client.Get(scheme + *addr + "/health")
	if err != nil {
		fmt.Fprintf(stderr, "unhealthy: %v\n", err)
		return 1
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if resp.StatusCode != http.StatusOK {
		fmt.Fprintf(stderr, "unhealthy: %s: %s\n", resp.Status, body)
		return 1
	}
	fmt.Fprintf(stdout, "%s", body)
	return 0
}

// healthTLS trusts the cluster's CA but not a host name: the check dials
// 127.0.0.1, which a node's certificate need not name.
func healthTLS(caFile string) (*http.Transport, error) {
	pool, err := peertls.LoadCA(caFile)
	if err != nil {
		return nil, err
	}
	return &http.Transport{TLSClientConfig: &tls.Config{
		MinVersion:         tls.VersionTLS12,
		InsecureSkipVerify: true, // replaced by the chain check below
		VerifyPeerCertificate: func(raw [][]byte, _ [][]*x509.Certificate) error {
			certs := make([]*x509.Certificate, len(raw))
			for i, der := range raw {
				c, err := x509.ParseCertificate(der)
				if err != nil {
					return err
				}
				certs[i] = c
			}
			if len(certs) == 0 {
				return errors.New("node sent no certificate")
			}
			inter := x509.NewCertPool()
			for _, c := range certs[1:] {
				inter.AddCert(c)
			}
			_, err := certs[0].Verify(x509.VerifyOptions{Roots: pool, Intermediates: inter})
			return err
		},
	}}, nil
}
