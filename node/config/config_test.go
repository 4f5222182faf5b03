package config

import (
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/goblocks/goblocks/node/replication"
)

// env serves kv as the environment. Unless kv mentions ClusterToken or
// ZKAuth (even as ""), it adds ZKAuth: every valid configuration needs one
// of them, and the tests of other settings should not repeat it.
func env(kv map[string]string) func(string) string {
	_, tok := kv["ClusterToken"]
	_, auth := kv["ZKAuth"]
	return func(k string) string {
		if k == "ZKAuth" && !tok && !auth {
			return "goblocks:test"
		}
		return kv[k]
	}
}

func TestLoadOriginalVariables(t *testing.T) {
	c, err := Load([]string{"-port", "3002"}, env(map[string]string{
		"ZKAddress": "zk1:2181,zk2:2181", "ReplicaName": "node2",
		"ReplicaAddress": "localhost", "ReplicationFactor": "2",
	}), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if c.ZKAddress != "zk1:2181,zk2:2181" || c.ReplicaName != "node2" || c.ReplicationFactor != 2 {
		t.Fatalf("got %+v", c)
	}
	if got := c.AdvertiseAddress(); got != "localhost:3002" {
		t.Fatalf("AdvertiseAddress = %q", got)
	}
	if c.VNodes != 20 || c.StaleGracePeriod != 5*time.Minute || c.ReadConsistency != replication.Quorum || c.Storage != "pebble" {
		t.Fatalf("defaults not applied: %+v", c)
	}
}

func TestFlagsWinOverEnv(t *testing.T) {
	c, err := Load([]string{"-ReplicaName", "flagname", "-Storage", "memory", "-WriteConsistency", "all"},
		env(map[string]string{"ReplicaName": "envname", "ReplicaAddress": "10.0.0.1:4000"}), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if c.ReplicaName != "flagname" || c.Storage != "memory" || c.WriteConsistency != replication.All {
		t.Fatalf("got %+v", c)
	}
	if got := c.AdvertiseAddress(); got != "10.0.0.1:4000" {
		t.Fatalf("address with port must be used as is, got %q", got)
	}
}

func TestLoadRejects(t *testing.T) {
	base := map[string]string{"ReplicaName": "n", "ReplicaAddress": "h"}
	tests := []struct {
		name string
		env  map[string]string
		args []string
		want string
	}{
		{"bad rf", map[string]string{"ReplicationFactor": "0"}, nil, "ReplicationFactor"},
		{"no token, no zookeeper auth", map[string]string{"ClusterToken": "", "ZKAuth": ""}, nil, "ClusterToken is empty"},
		{"static peers need a token", map[string]string{"Peers": "a=h:1", "ZKAuth": "u:p"}, nil, "ClusterToken is empty"},
		{"short token", map[string]string{"ClusterToken": "s3cret"}, nil, "ClusterToken: token is 6 bytes"},
		{"token with a space", map[string]string{"ClusterToken": "0123456789 abcdefgh"}, nil, "printable"},
		{"zookeeper auth without password", map[string]string{"ZKAuth": "goblocks:"}, nil, "ZKAuth"},
		{"short admin token", map[string]string{"AdminToken": "admin"}, nil, "AdminToken"},
		{"TLS cert without key and CA", map[string]string{"TLSCert": "/etc/node.pem"}, nil, "TLSCert, TLSKey and TLSCA"},
		{"TLS without CA", map[string]string{"TLSCert": "/etc/node.pem", "TLSKey": "/etc/key.pem"}, nil, "TLSCert, TLSKey and TLSCA"},
		{"negative free space", map[string]string{"MinFreeBytes": "-1"}, nil, "MinFreeBytes"},
		{"tiny connection cap", map[string]string{"MaxConnections": "2"}, nil, "MaxConnections"},
		{"rebuild not a bool", map[string]string{"RebuildCorruptStore": "yes please"}, nil, "not true or false"},
		{"rf not a number", map[string]string{"ReplicationFactor": "three"}, nil, "not an integer"},
		{"bad storage", nil, []string{"-Storage", "rocks"}, "Storage"},
		{"bad grace", map[string]string{"StaleGracePeriod": "5 minutes"}, nil, "duration"},
		{"negative grace", nil, []string{"-StaleGracePeriod", "-1s"}, "negative"},
		{"bad consistency env", map[string]string{"ReadConsistency": "most"}, nil, "consistency"},
		{"bad consistency flag", nil, []string{"-WriteConsistency", "two"}, "consistency"},
		{"bad port", nil, []string{"-port", "70000"}, "port"},
		{"bad vnodes", map[string]string{"VNodes": "0"}, nil, "VNodes"},
		{"bad peers", map[string]string{"Peers": "a=nohostport"}, nil, "Peers"},
		{"dup peers", map[string]string{"Peers": "a=h:1,a=h:2"}, nil, "Peers"},
		{"stray args", nil, []string{"extra"}, "unexpected"},
		{"no zk no peers", map[string]string{"ZKAddress": ""}, []string{"-ZKAddress", ""}, "ZKAddress"},
		{"name with slash", map[string]string{"ReplicaName": "a/b"}, nil, "ReplicaName"},
		{"negative anti-entropy interval", nil, []string{"-AntiEntropyInterval", "-1m"}, "AntiEntropyInterval"},
		{"bad anti-entropy interval", map[string]string{"AntiEntropyInterval": "often"}, nil, "duration"},
		{"NBD address without port", map[string]string{"NBDAddress": "10809"}, nil, "NBDAddress"},
		{"NBD with static peers", map[string]string{"NBDAddress": ":10809", "Peers": "a=h:1", "ClusterToken": "0123456789abcdef0123"}, nil, "NBDAddress needs ZooKeeper"},
		{"no NBD connections", map[string]string{"NBDMaxConnections": "0"}, nil, "NBDMaxConnections"},
		{"NBD in-flight below one request", map[string]string{"NBDMaxInflightBytes": "4096"}, nil, "NBDMaxInflightBytes"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			kv := map[string]string{}
			for k, v := range base {
				kv[k] = v
			}
			for k, v := range tc.env {
				kv[k] = v
			}
			_, err := Load(tc.args, env(kv), io.Discard)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want mention of %q", err, tc.want)
			}
			if !strings.Contains(tc.name, "flag") && !errors.Is(err, ErrInvalid) {
				t.Fatalf("err %v does not wrap ErrInvalid", err)
			}
		})
	}
}

// With ClaimSlot the name comes from the claimed slot, not the hostname,
// unless ReplicaName is set explicitly.
func TestClaimSlotLeavesNameToSlot(t *testing.T) {
	c, err := Load(nil, env(map[string]string{"ClaimSlot": "node", "ReplicaAddress": "10.0.0.1"}), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if c.ReplicaName != "" || c.ClaimSlot != "node" {
		t.Fatalf("got ReplicaName %q ClaimSlot %q", c.ReplicaName, c.ClaimSlot)
	}
	c, err = Load(nil, env(map[string]string{"ClaimSlot": "node", "ReplicaName": "fixed", "ReplicaAddress": "10.0.0.1"}), io.Discard)
	if err != nil || c.ReplicaName != "fixed" {
		t.Fatalf("explicit name: %q, %v", c.ReplicaName, err)
	}
}

func TestTracesURL(t *testing.T) {
	for _, tc := range []struct {
		env  map[string]string
		want string
	}{
		{map[string]string{}, ""},
		{map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://jaeger:4317"}, "http://jaeger:4317"},
		{map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://jaeger:4318/", "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf"}, "http://jaeger:4318/v1/traces"},
		{map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://a:4318", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://b:9/x", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "http/protobuf"}, "http://b:9/x"},
		{map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://jaeger:4317", "OTEL_TRACES_EXPORTER": "none"}, ""},
		{map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://jaeger:4317", "OTEL_SDK_DISABLED": "true"}, ""},
	} {
		tc.env["ReplicaName"], tc.env["ReplicaAddress"] = "n", "10.0.0.1"
		c, err := Load(nil, env(tc.env), io.Discard)
		if err != nil {
			t.Fatalf("%v: %v", tc.env, err)
		}
		if got := c.TracesURL(); got != tc.want {
			t.Errorf("%v: TracesURL = %q, want %q", tc.env, got, tc.want)
		}
	}
	for _, bad := range []map[string]string{
		{"OTEL_EXPORTER_OTLP_ENDPOINT": "jaeger:4317"},
		{"OTEL_EXPORTER_OTLP_PROTOCOL": "thrift"},
		{"OTEL_TRACES_EXPORTER": "zipkin"},
	} {
		bad["ReplicaName"], bad["ReplicaAddress"] = "n", "10.0.0.1"
		if _, err := Load(nil, env(bad), io.Discard); !errors.Is(err, ErrInvalid) {
			t.Errorf("%v accepted: %v", bad, err)
		}
	}
}

func TestPublicURL(t *testing.T) {
	for _, tc := range []struct{ tmpl, name, want string }{
		{"http://localhost:300{n}", "node-2", "http://localhost:3002"},
		{"https://{name}.example.com/", "node-12", "https://node-12.example.com/"},
		{"http://lb:8080", "store", "http://lb:8080"},
		{"http://localhost:300{n}", "store", "http://localhost:300"},
	} {
		if got := ExpandPublicURL(tc.tmpl, tc.name); got != tc.want {
			t.Errorf("ExpandPublicURL(%q, %q) = %q, want %q", tc.tmpl, tc.name, got, tc.want)
		}
	}
	base := map[string]string{"ReplicaName": "n1", "ReplicaAddress": "10.0.0.1"}
	for _, bad := range []string{"javascript:alert(1)", "localhost:3001", "http://", "ftp://host/", "http://u:p@host/", "http://host/?q=1"} {
		e := map[string]string{"PublicURL": bad}
		for k, v := range base {
			e[k] = v
		}
		if _, err := Load(nil, env(e), io.Discard); !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "PublicURL") {
			t.Errorf("PublicURL=%q: %v, want an invalid-configuration error naming PublicURL", bad, err)
		}
	}
}
