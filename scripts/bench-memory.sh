#!/usr/bin/env bash
# Memory of a loaded node: starts a 3-node cluster (static Peers, Pebble,
# fsync on, default settings, as ../shared/bench/sitting.sh does), loads it
# with blockbench (PUT, then GET after a fill, 32 clients), and prints each
# node's resident memory and node 0's Go memory figures.
#
#   scripts/bench-memory.sh bin/goblocks [SECONDS]
set -eu
bin=$(realpath "${1:?path to the goblocks binary}"); d=${2:-8}
bench=$(cd "$(dirname "$0")/../../shared/bench" && pwd)
out=$(mktemp -d); pids=()
trap 'kill ${pids[*]:-} 2>/dev/null; wait 2>/dev/null; rm -rf "$out"' EXIT
(cd "$bench" && go build -o "$out/" ./blockbench)
free() { python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }
ports=($(free) $(free) $(free)); peers=""; urls=""
for i in 0 1 2; do peers+="${peers:+,}n$i=127.0.0.1:${ports[$i]}"; urls+="${urls:+,}http://127.0.0.1:${ports[$i]}"; done
token=$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')
for i in 0 1 2; do
  env Peers="$peers" ReplicaName=n$i ReplicaAddress=127.0.0.1 DataDir="$out/n$i" LogLevel=warn ClusterToken="$token" \
    "$bin" -port "${ports[$i]}" >"$out/n$i.log" 2>&1 & pids+=($!)
done
for _ in $(seq 50); do curl -sf "http://127.0.0.1:${ports[2]}/health" >/dev/null && break; sleep 0.2; done
"$out/blockbench" -targets "$urls" -mode put -d "${d}s" -c 32 -label put
"$out/blockbench" -targets "$urls" -mode get -fill -d "${d}s" -c 32 -label get
for i in 0 1 2; do echo "n$i $(grep VmRSS /proc/${pids[$i]}/status)"; done
curl -s "http://127.0.0.1:${ports[0]}/metrics" |
  grep -E '^(go_memstats_(heap_inuse|heap_idle|heap_released|sys)_bytes|process_resident_memory_bytes|go_goroutines) '
