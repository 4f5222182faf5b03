// Package config turns environment variables and flags into a validated
// node configuration. The original's variable names (ZKAddress,
// ReplicaName, ReplicaAddress, ReplicationFactor, flag -port) keep their
// meaning; every newer setting follows the same style and is also a flag.
// Flags win over the environment.
package config

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/goblocks/goblocks/node/auth"
	"github.com/goblocks/goblocks/node/membership"
	"github.com/goblocks/goblocks/node/replication"
)

// Config is a node's configuration. Zero values are replaced by Default().
type Config struct {
	// Port the HTTP API listens on (flag -port, as the original).
	Port int
	// ReplicaName is this node's unique logical name; default hostname.
	ReplicaName string
	// ReplicaAddress is the host (or host:port) peers dial; default the
	// first non-loopback IP. Without a port, Port is appended.
	ReplicaAddress string
	// ZKAddress is the comma-separated ZooKeeper ensemble.
	ZKAddress string
	// Peers, when set, replaces ZooKeeper by a static member list
	// "name=host:port,..." (a test and demo seam).
	Peers string
	// ReplicationFactor is how many distinct nodes hold each block.
	ReplicationFactor int
	// VNodes is the number of ring tokens per node.
	VNodes int
	// DataDir holds the pebble database.
	DataDir string
	// Storage is "pebble" (durable, default) or "memory".
	Storage string
	// StaleGracePeriod keeps copies a node no longer owns readable this long
	// after a ring change before they are collected.
	StaleGracePeriod time.Duration
	// ReadConsistency and WriteConsistency are the defaults when a request
	// has no ?consistency=.
	ReadConsistency  replication.Consistency
	WriteConsistency replication.Consistency
	// ReadRepair is "blocking" (a read whose replies disagree writes the
	// newest version back to a quorum before answering: linearizable) or
	// "background" (answer first, repair after: not linearizable).
	ReadRepair string
	// MaxClockOffset is how far ahead of this node's clock a version may
	// be on any path (replica writes, batches, hints, repairs, transfers,
	// anti-entropy); later ones are refused.
	MaxClockOffset time.Duration
	// ClusterToken is the bearer token every /internal/* request must
	// carry: the same secret on every node. It may be empty only with
	// ZooKeeper membership and ZKAuth, and then the nodes share a generated
	// token through ZooKeeper, readable only with ZKAuth's credentials.
	ClusterToken string
	// ZKAuth is ZooKeeper digest credentials "user:password". Every znode
	// the node creates then carries a digest ACL for them, so clients
	// without them can neither read nor change the cluster's state.
	ZKAuth string
	// AdminToken, when set, is required as a bearer token on /admin/* and
	// /metrics.
	AdminToken string
	// TLSCert, TLSKey and TLSCA (PEM files, all or none) turn on mutual
	// TLS: the node serves HTTPS, dials peers over TLS with its
	// certificate, and serves /internal/* only to peers whose certificate
	// TLSCA signed (the cluster token is still required too).
	TLSCert, TLSKey, TLSCA string
	// MinFreeBytes is the free space the data directory must keep: below
	// it the node refuses writes (507) and keeps serving reads, so a full
	// disk degrades the node instead of crashing it.
	MinFreeBytes int64
	// RebuildCorruptStore lets a node whose store can no longer be opened
	// (corrupt tables or WAL) move it aside and start empty, to be refilled
	// from its peers. Off: the node exits with a message naming it.
	RebuildCorruptStore bool
	// MaxConnections caps concurrent client and peer connections; past it
	// new connections wait in the kernel's accept queue.
	MaxConnections int
	// MaxInflightBatchBytes caps the bytes of internal batch bodies being
	// read at once; past it batches are refused with 503 (the sender
	// retries or hints).
	MaxInflightBatchBytes int64
	// BlockSize is the exact payload size of every block.
	BlockSize int
	// ReadRepairChance is the probability that a read also checks the
	// owners it did not need for its quorum and repairs them.
	ReadRepairChance float64
	// RequestTimeout bounds one coordinator request including replica calls.
	RequestTimeout time.Duration
	// LogLevel is a zerolog level name.
	LogLevel string
	// ZKRoot is the znode under which the cluster keeps its state.
	ZKRoot string
	// ZKSessionTimeout is how long ZooKeeper waits before declaring a
	// silent node dead (its ephemeral znodes vanish, a migration starts).
	ZKSessionTimeout time.Duration
	// TombstoneGracePeriod keeps delete markers; it must exceed
	// StaleGracePeriod so a tombstone outlives every moved copy.
	TombstoneGracePeriod time.Duration
	// GCInterval is how often stale copies and tombstones are examined.
	GCInterval time.Duration
	// MigrationRateLimit caps outgoing migration traffic in bytes/s
	// (0: unlimited).
	MigrationRateLimit int64
	// LeaveTimeout bounds the graceful leave on SIGTERM.
	LeaveTimeout time.Duration
	// HintWindow is how long a write a replica missed is kept for it
	// (hinted handoff); 0 turns hints off.
	HintWindow time.Duration
	// AntiEntropyInterval is how often the node compares its replicas
	// with one peer (in rotation) and repairs what differs; 0 turns
	// anti-entropy off.
	AntiEntropyInterval time.Duration
	// ClaimSlot, when set to a prefix, makes the node claim the first free
	// directory DataDir/<prefix>-N (see package slot), keep its data there
	// and, unless ReplicaName is set, take <prefix>-N as its name: scaled
	// replicas sharing one volume get stable names and their own data.
	ClaimSlot string
	// PublicURL is where operators' browsers and tools reach this node
	// when that is not ReplicaAddress (a published port, a load
	// balancer): the /ui members table links to it and `goblocks status`
	// prints it. {name} is replaced by the node's name and {n} by the
	// number that ends it (with ClaimSlot, the slot), so one setting fits
	// every replica: the lab uses http://localhost:300{n}.
	PublicURL string
	// NBDAddress is host:port of the node's NBD server (volumes as block
	// devices; 10809 by convention). Empty: no NBD server. Volumes need
	// ZooKeeper membership (their catalog lives there).
	NBDAddress string
	// NBDMaxConnections caps open NBD connections.
	NBDMaxConnections int
	// NBDMaxInflightBytes caps the request payloads one NBD connection
	// holds at once; past it the node stops reading that client's
	// requests until some complete.
	NBDMaxInflightBytes int64

	// Tracing, by the standard OpenTelemetry variables. With neither
	// endpoint set tracing is off and costs nothing.
	OTLPEndpoint       string // OTEL_EXPORTER_OTLP_ENDPOINT (base URL)
	OTLPTracesEndpoint string // OTEL_EXPORTER_OTLP_TRACES_ENDPOINT (full URL, wins)
	// OTLPProtocol is grpc (the default: the original's examples use the
	// collector's gRPC port 4317), http/protobuf or http/json.
	OTLPProtocol string
	ServiceName  string // OTEL_SERVICE_NAME
	// TracesExporter is OTEL_TRACES_EXPORTER: otlp (default) or none.
	TracesExporter string

	// Version is the build's version (set by main, not configurable).
	Version string
}

// Default returns the defaults, each with the reason for its value.
func Default() Config {
	return Config{
		Port:              3000,             // the original's k8s manifests use 3000
		ZKAddress:         "localhost:2181", // the original's default
		ReplicationFactor: 3,                // survives one failure with quorum
		VNodes:            20,               // the original's count
		DataDir:           "data",
		Storage:           "pebble",
		StaleGracePeriod:  5 * time.Minute,    // the original's grace period
		ReadConsistency:   replication.Quorum, // R+W > RF: reads see acknowledged writes
		WriteConsistency:  replication.Quorum,
		BlockSize:         4096,
		ReadRepairChance:  0.1, // Cassandra's historical default
		ReadRepair:        "blocking",
		MaxClockOffset:    500 * time.Millisecond, // NTP keeps hosts within milliseconds; room for a poorly synced VM
		RequestTimeout:    5 * time.Second,
		LogLevel:          "info",
		ZKRoot:            "/goblocks",
		ZKSessionTimeout:  10 * time.Second, // a crashed node is replaced within ~10s
		// Cassandra's gc_grace default is 10 days; blocks move faster than
		// rows, and a day outlives any hint or migration by far.
		TombstoneGracePeriod: 24 * time.Hour,
		GCInterval:           time.Minute,
		LeaveTimeout:         5 * time.Minute,
		HintWindow:           3 * time.Hour,    // Cassandra's max_hint_window
		AntiEntropyInterval:  10 * time.Minute, // one peer per round: 5 nodes check every pair within the hour
		MinFreeBytes:         1 << 30,          // room for pebble's compactions and the WAL to finish what they started
		NBDMaxConnections:    64,
		NBDMaxInflightBytes:  64 << 20,
		MaxConnections:       4096, // far above 32 clients x a few peers; bounds memory and file descriptors
		// 64 batches of 128 blocks of 4 KiB in flight: more than a 2-core
		// node can apply at once, far below its memory limit.
		MaxInflightBatchBytes: 32 << 20,
		OTLPProtocol:          "grpc",
		ServiceName:           "goblocks", // the service the original's Jaeger steps select
		TracesExporter:        "otlp",
	}
}

// ErrInvalid prefixes every validation error.
var ErrInvalid = errors.New("config: invalid")

// Validate checks every setting and returns all problems at once.
func (c *Config) Validate() error {
	var errs []error
	bad := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("%w: "+format, append([]any{ErrInvalid}, args...)...))
	}
	if c.Port < 1 || c.Port > 65535 {
		bad("port %d out of range 1-65535", c.Port)
	}
	if (c.ReplicaName == "" && c.ClaimSlot == "") || len(c.ReplicaName) > 255 || strings.ContainsAny(c.ReplicaName, "/ \t\n") {
		bad("ReplicaName %q: want 1-255 characters without '/' or spaces", c.ReplicaName)
	}
	if c.ReplicaAddress == "" {
		bad("ReplicaAddress is empty")
	}
	if c.PublicURL != "" {
		if err := membership.ValidatePublicURL(ExpandPublicURL(c.PublicURL, "node-1")); err != nil {
			bad("PublicURL: %v", err)
		}
	}
	if c.NBDAddress != "" {
		if _, port, err := net.SplitHostPort(c.NBDAddress); err != nil || port == "" {
			bad("NBDAddress %q: want host:port (e.g. :10809)", c.NBDAddress)
		}
		if c.Peers != "" {
			bad("NBDAddress needs ZooKeeper membership: the volume catalog lives in ZooKeeper (unset Peers)")
		}
	}
	if c.NBDMaxConnections < 1 {
		bad("NBDMaxConnections %d: want >= 1", c.NBDMaxConnections)
	}
	if c.NBDMaxInflightBytes < 32<<20 {
		bad("NBDMaxInflightBytes %d: want >= 33554432 (one largest request, 32 MiB)", c.NBDMaxInflightBytes)
	}
	if c.ReplicationFactor < 1 || c.ReplicationFactor > 15 {
		bad("ReplicationFactor %d: want 1-15", c.ReplicationFactor)
	}
	if c.VNodes < 1 || c.VNodes > 4096 {
		bad("VNodes %d: want 1-4096", c.VNodes)
	}
	switch c.Storage {
	case "pebble":
		if c.DataDir == "" {
			bad("DataDir is empty with Storage=pebble")
		}
	case "memory":
	default:
		bad("Storage %q: want pebble or memory", c.Storage)
	}
	if c.StaleGracePeriod < 0 {
		bad("StaleGracePeriod %v is negative", c.StaleGracePeriod)
	}
	if c.Peers == "" && c.ZKAddress == "" {
		bad("ZKAddress is empty and no Peers are set")
	}
	if c.Peers != "" {
		if _, err := ParsePeers(c.Peers); err != nil {
			errs = append(errs, err)
		}
	}
	if c.BlockSize < 1 || c.BlockSize > 1<<20 {
		bad("BlockSize %d: want 1..1048576", c.BlockSize)
	}
	if c.ReadRepair != "blocking" && c.ReadRepair != "background" {
		bad("ReadRepair %q: want blocking or background", c.ReadRepair)
	}
	if c.MaxClockOffset < time.Millisecond || c.MaxClockOffset > time.Hour {
		bad("MaxClockOffset %v: want 1ms..1h", c.MaxClockOffset)
	}
	switch {
	case c.ClusterToken != "":
		if err := auth.Validate(c.ClusterToken); err != nil {
			bad("ClusterToken: %v", err)
		}
	case c.Peers != "" || c.ZKAuth == "":
		bad("ClusterToken is empty: every node must share a secret for /internal/* (set ClusterToken to the same random string on every node, e.g. `openssl rand -hex 32`, or with ZooKeeper set ZKAuth=user:password and the nodes share a generated token through ZooKeeper)")
	}
	if c.ZKAuth != "" {
		if user, pass, ok := strings.Cut(c.ZKAuth, ":"); !ok || user == "" || pass == "" || strings.ContainsAny(c.ZKAuth, " \t\n") {
			bad("ZKAuth: want user:password without spaces")
		}
	}
	if set := btoi(c.TLSCert != "") + btoi(c.TLSKey != "") + btoi(c.TLSCA != ""); set != 0 && set != 3 {
		bad("TLSCert, TLSKey and TLSCA must be set together (mutual TLS needs the node's key pair and the cluster's CA)")
	}
	if c.AdminToken != "" {
		if err := auth.Validate(c.AdminToken); err != nil {
			bad("AdminToken: %v", err)
		}
	}
	if c.MinFreeBytes < 0 {
		bad("MinFreeBytes %d is negative", c.MinFreeBytes)
	}
	if c.MaxConnections < 16 {
		bad("MaxConnections %d: want >= 16", c.MaxConnections)
	}
	if c.MaxInflightBatchBytes < 1<<20 {
		bad("MaxInflightBatchBytes %d: want >= 1 MiB", c.MaxInflightBatchBytes)
	}
	if c.ReadRepairChance < 0 || c.ReadRepairChance > 1 {
		bad("ReadRepairChance %v: want 0..1", c.ReadRepairChance)
	}
	if c.TombstoneGracePeriod <= c.StaleGracePeriod {
		bad("TombstoneGracePeriod %v must exceed StaleGracePeriod %v", c.TombstoneGracePeriod, c.StaleGracePeriod)
	}
	if c.ZKSessionTimeout < 200*time.Millisecond {
		bad("ZKSessionTimeout %v: want >= 200ms", c.ZKSessionTimeout)
	}
	if c.GCInterval <= 0 || c.LeaveTimeout <= 0 {
		bad("GCInterval %v and LeaveTimeout %v must be > 0", c.GCInterval, c.LeaveTimeout)
	}
	if c.HintWindow < 0 {
		bad("HintWindow %v is negative", c.HintWindow)
	}
	if c.AntiEntropyInterval < 0 {
		bad("AntiEntropyInterval %v is negative", c.AntiEntropyInterval)
	}
	if c.MigrationRateLimit < 0 {
		bad("MigrationRateLimit %d is negative", c.MigrationRateLimit)
	}
	if !strings.HasPrefix(c.ZKRoot, "/") || strings.HasSuffix(c.ZKRoot, "/") {
		bad("ZKRoot %q: want an absolute znode path like /goblocks", c.ZKRoot)
	}
	if c.RequestTimeout <= 0 {
		bad("RequestTimeout %v: want > 0", c.RequestTimeout)
	}
	switch c.OTLPProtocol {
	case "grpc", "http/protobuf", "http/json":
	default:
		bad("OTEL_EXPORTER_OTLP_PROTOCOL %q: want grpc, http/protobuf or http/json", c.OTLPProtocol)
	}
	if c.TracesExporter != "otlp" && c.TracesExporter != "none" {
		bad("OTEL_TRACES_EXPORTER %q: want otlp or none", c.TracesExporter)
	}
	for _, e := range []string{c.OTLPEndpoint, c.OTLPTracesEndpoint} {
		if u, err := url.Parse(e); e != "" && (err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "") {
			bad("OTLP endpoint %q: want a URL like http://jaeger:4317", e)
		}
	}
	return errors.Join(errs...)
}

// TracesURL is where spans are exported, following the OpenTelemetry
// exporter spec: the traces endpoint as given, or the base endpoint (with
// /v1/traces appended for the HTTP protocols). "" means tracing is off.
func (c *Config) TracesURL() string {
	if c.TracesExporter == "none" {
		return ""
	}
	if c.OTLPTracesEndpoint != "" {
		return c.OTLPTracesEndpoint
	}
	if c.OTLPEndpoint == "" || c.OTLPProtocol == "grpc" {
		return c.OTLPEndpoint
	}
	return strings.TrimSuffix(c.OTLPEndpoint, "/") + "/v1/traces"
}

// AdvertiseAddress is host:port as peers dial it.
func (c *Config) AdvertiseAddress() string {
	if _, _, err := net.SplitHostPort(c.ReplicaAddress); err == nil {
		return c.ReplicaAddress
	}
	return net.JoinHostPort(c.ReplicaAddress, strconv.Itoa(c.Port))
}

// ExpandPublicURL fills a PublicURL template for the node called name.
func ExpandPublicURL(tmpl, name string) string {
	i := len(name)
	for i > 0 && name[i-1] >= '0' && name[i-1] <= '9' {
		i--
	}
	return strings.NewReplacer("{name}", name, "{n}", name[i:]).Replace(tmpl)
}

// Peer is one entry of a static member list.
type Peer struct{ Name, Addr string }

// ParsePeers parses "name=host:port,name2=host:port".
func ParsePeers(s string) ([]Peer, error) {
	var peers []Peer
	seen := map[string]bool{}
	for _, item := range strings.Split(s, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		name, addr, ok := strings.Cut(item, "=")
		if !ok || name == "" || seen[name] {
			return nil, fmt.Errorf("%w: Peers entry %q: want unique name=host:port", ErrInvalid, item)
		}
		if _, _, err := net.SplitHostPort(addr); err != nil {
			return nil, fmt.Errorf("%w: Peers entry %q: %v", ErrInvalid, item, err)
		}
		seen[name] = true
		peers = append(peers, Peer{Name: name, Addr: addr})
	}
	if len(peers) == 0 {
		return nil, fmt.Errorf("%w: Peers %q lists no peer", ErrInvalid, s)
	}
	return peers, nil
}

// Load reads the environment (getenv) then the flags in args, fills the
// machine-derived defaults, and validates. A flag.ErrHelp is returned as is.
func Load(args []string, getenv func(string) string, stderr io.Writer) (Config, error) {
	c := Default()
	fs := flag.NewFlagSet("goblocks node", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var envErrs []error
	str := func(p *string, name, usage string) {
		if v := getenv(name); v != "" {
			*p = v
		}
		fs.StringVar(p, name, *p, usage+" (env "+name+")")
	}
	num := func(p *int, name, usage string) {
		if v := getenv(name); v != "" {
			n, err := strconv.Atoi(v)
			if err != nil {
				envErrs = append(envErrs, fmt.Errorf("%w: %s=%q is not an integer", ErrInvalid, name, v))
			}
			*p = n
		}
		fs.IntVar(p, name, *p, usage+" (env "+name+")")
	}
	dur := func(p *time.Duration, name, usage string) {
		if v := getenv(name); v != "" {
			d, err := time.ParseDuration(v)
			if err != nil {
				envErrs = append(envErrs, fmt.Errorf("%w: %s=%q is not a Go duration", ErrInvalid, name, v))
			}
			*p = d
		}
		fs.DurationVar(p, name, *p, usage+" (env "+name+")")
	}
	cons := func(p *replication.Consistency, name, usage string) {
		if v := getenv(name); v != "" {
			cl, err := replication.ParseConsistency(v)
			if err != nil {
				envErrs = append(envErrs, fmt.Errorf("%w: %s: %v", ErrInvalid, name, err))
			}
			*p = cl
		}
		fs.Func(name, usage+" (env "+name+", default "+string(*p)+")", func(s string) error {
			cl, err := replication.ParseConsistency(s)
			*p = cl
			return err
		})
	}
	fl := func(p *float64, name, usage string) {
		if v := getenv(name); v != "" {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				envErrs = append(envErrs, fmt.Errorf("%w: %s=%q is not a number", ErrInvalid, name, v))
			}
			*p = f
		}
		fs.Float64Var(p, name, *p, usage+" (env "+name+")")
	}
	boolean := func(p *bool, name, usage string) {
		if v := getenv(name); v != "" {
			b, err := strconv.ParseBool(v)
			if err != nil {
				envErrs = append(envErrs, fmt.Errorf("%w: %s=%q is not true or false", ErrInvalid, name, v))
			}
			*p = b
		}
		fs.BoolVar(p, name, *p, usage+" (env "+name+")")
	}
	num(&c.Port, "port", "HTTP listen port")
	if v := getenv("PORT"); v != "" && getenv("port") == "" {
		if n, err := strconv.Atoi(v); err == nil {
			c.Port = n
		}
	}
	str(&c.ReplicaName, "ReplicaName", "unique logical node name (default hostname)")
	str(&c.ReplicaAddress, "ReplicaAddress", "host or host:port peers dial (default first non-loopback IP)")
	str(&c.ZKAddress, "ZKAddress", "comma-separated ZooKeeper ensemble")
	str(&c.Peers, "Peers", "static member list name=host:port,... instead of ZooKeeper")
	num(&c.ReplicationFactor, "ReplicationFactor", "copies of each block")
	num(&c.VNodes, "VNodes", "ring tokens per node")
	str(&c.DataDir, "DataDir", "pebble data directory")
	str(&c.Storage, "Storage", "storage engine: pebble or memory")
	dur(&c.StaleGracePeriod, "StaleGracePeriod", "how long moved-away copies stay readable")
	cons(&c.ReadConsistency, "ReadConsistency", "default read consistency one|quorum|all")
	cons(&c.WriteConsistency, "WriteConsistency", "default write consistency one|quorum|all")
	str(&c.ClusterToken, "ClusterToken", "bearer token required on /internal/* (16-256 printable bytes; may be empty with ZKAuth)")
	str(&c.ZKAuth, "ZKAuth", "ZooKeeper digest credentials user:password; znodes get a digest ACL")
	str(&c.AdminToken, "AdminToken", "bearer token required on /admin/* and /metrics (empty: open)")
	str(&c.TLSCert, "TLSCert", "PEM certificate of this node (with TLSKey and TLSCA: mutual TLS)")
	str(&c.TLSKey, "TLSKey", "PEM private key of TLSCert")
	str(&c.TLSCA, "TLSCA", "PEM CA that signs every node's certificate")
	boolean(&c.RebuildCorruptStore, "RebuildCorruptStore", "move a store that cannot be opened aside and start empty, refilled from peers")
	num(&c.MaxConnections, "MaxConnections", "cap on concurrent connections")
	num(&c.BlockSize, "BlockSize", "exact block payload size in bytes")
	fl(&c.ReadRepairChance, "ReadRepairChance", "probability a read checks and repairs all owners")
	dur(&c.RequestTimeout, "RequestTimeout", "deadline of one client request")
	str(&c.ReadRepair, "ReadRepair", "blocking (linearizable quorum reads) or background (faster, not linearizable)")
	dur(&c.MaxClockOffset, "MaxClockOffset", "refuse versions further ahead of this node's clock")
	str(&c.LogLevel, "LogLevel", "log level: debug, info, warn, error")
	str(&c.ZKRoot, "ZKRoot", "znode holding the cluster state")
	dur(&c.ZKSessionTimeout, "ZKSessionTimeout", "ZooKeeper session timeout")
	dur(&c.TombstoneGracePeriod, "TombstoneGracePeriod", "how long delete markers are kept")
	dur(&c.GCInterval, "GCInterval", "how often stale copies are examined")
	dur(&c.LeaveTimeout, "LeaveTimeout", "longest graceful leave on SIGTERM")
	dur(&c.HintWindow, "HintWindow", "how long writes a replica missed are kept for it (0: no hinted handoff)")
	dur(&c.AntiEntropyInterval, "AntiEntropyInterval", "how often replicas are compared with one peer and repaired (0: off)")
	i64 := func(p *int64, name, usage string) {
		if v := getenv(name); v != "" {
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				envErrs = append(envErrs, fmt.Errorf("%w: %s=%q is not an integer", ErrInvalid, name, v))
			}
			*p = n
		}
		fs.Int64Var(p, name, *p, usage+" (env "+name+")")
	}
	i64(&c.MigrationRateLimit, "MigrationRateLimit", "outgoing migration bytes/s, 0 = unlimited")
	i64(&c.MinFreeBytes, "MinFreeBytes", "free bytes the data directory keeps; below it writes are refused (507)")
	i64(&c.MaxInflightBatchBytes, "MaxInflightBatchBytes", "cap on internal batch bytes read at once (503 past it)")
	str(&c.OTLPEndpoint, "OTEL_EXPORTER_OTLP_ENDPOINT", "OTLP endpoint base URL; unset: tracing off")
	str(&c.OTLPTracesEndpoint, "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTLP traces URL (overrides the base endpoint)")
	str(&c.OTLPProtocol, "OTEL_EXPORTER_OTLP_PROTOCOL", "OTLP protocol: grpc, http/protobuf or http/json")
	if v := getenv("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"); v != "" {
		c.OTLPProtocol = v
	}
	str(&c.ServiceName, "OTEL_SERVICE_NAME", "service name in traces")
	str(&c.TracesExporter, "OTEL_TRACES_EXPORTER", "otlp or none")
	if getenv("OTEL_SDK_DISABLED") == "true" {
		c.TracesExporter = "none"
	}
	str(&c.ClaimSlot, "ClaimSlot", "claim DataDir/<prefix>-N as data dir and name (replicas sharing a volume)")
	str(&c.PublicURL, "PublicURL", "URL browsers and tools reach this node at, if not its address ({name}, {n}: its name, the number ending it)")
	str(&c.NBDAddress, "NBDAddress", "host:port of the NBD server serving volumes, e.g. :10809 (empty: off)")
	num(&c.NBDMaxConnections, "NBDMaxConnections", "cap on open NBD connections")
	i64(&c.NBDMaxInflightBytes, "NBDMaxInflightBytes", "cap on request bytes one NBD connection holds at once")
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	if fs.NArg() > 0 {
		envErrs = append(envErrs, fmt.Errorf("%w: unexpected arguments %q", ErrInvalid, fs.Args()))
	}
	if c.ReplicaName == "" && c.ClaimSlot == "" {
		c.ReplicaName, _ = os.Hostname()
	}
	if c.ReplicaAddress == "" {
		c.ReplicaAddress = firstNonLoopbackIP()
	}
	if err := errors.Join(append(envErrs, c.Validate())...); err != nil {
		return c, err
	}
	return c, nil
}

func firstNonLoopbackIP() string {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return "127.0.0.1"
	}
	for _, a := range addrs {
		if ipn, ok := a.(*net.IPNet); ok && !ipn.IP.IsLoopback() && ipn.IP.To4() != nil {
			return ipn.IP.String()
		}
	}
	return "127.0.0.1"
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}
