#!/usr/bin/env bash
# `goblocks bench` against a 3-node RF=3 cluster (three processes, ZooKeeper,
# fsync'd Pebble) and, in the same run, against a single node with
# ReplicationFactor=1: PUT, GET and mixed, 32 workers. Figures for
# BENCHMARKS.md. Usage: scripts/bench-cli.sh [duration]
set -euo pipefail
bin=bin/goblocks
dur=${1:-10s}
work=$(mktemp -d)
pids=()
cleanup() {
  kill -TERM "${pids[@]}" 2>/dev/null || true
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT INT TERM

bench() { # label nodes
  for op in put get mixed; do
    printf '%-28s %-6s ' "$1" "$op"
    "$bin" bench -nodes "$2" -c 32 -d "$dur" -op "$op" -keys 2000 -json |
      python3 -c 'import json,sys; s=json.load(sys.stdin); print(json.dumps(s, separators=(",",":")))'
  done
}

# 3-node cluster: scripts/run-local.sh in its own directory.
(cd "$work" && mkdir -p bin && cp "$OLDPWD/$bin" bin/ && exec "$OLDPWD/scripts/run-local.sh" bin/goblocks) >"$work/cluster.log" 2>&1 &
pids+=($!)
deadline=$((SECONDS + 60))
until "$bin" status -nodes 127.0.0.1:3001 >/dev/null 2>&1; do
  [ $SECONDS -lt $deadline ] || { echo "cluster did not come up" >&2; tail -20 "$work/cluster.log" >&2; exit 1; }
  sleep 0.5
done
bench "3 nodes, RF=3, quorum" 127.0.0.1:3001,127.0.0.1:3002,127.0.0.1:3003
kill -TERM "${pids[0]}"; wait "${pids[0]}" 2>/dev/null || true
pids=()

# One node, RF=1: the same tool, the same disk, no replication.
Peers=single=127.0.0.1:3011 ReplicaName=single ReplicaAddress=127.0.0.1 ReplicationFactor=1 \
  DataDir="$work/single" "$bin" -port 3011 >"$work/single.log" 2>&1 &
pids+=($!)
deadline=$((SECONDS + 30))
until "$bin" health -addr 127.0.0.1:3011 >/dev/null 2>&1; do
  [ $SECONDS -lt $deadline ] || { echo "single node did not come up" >&2; exit 1; }
  sleep 0.2
done
bench "1 node, RF=1" 127.0.0.1:3011
