#!/usr/bin/env bash
# Runs a three-node goblocks cluster on this machine (ports 3001-3003, data
# under ./data/), in the foreground. Ctrl-C stops every node gracefully.
set -euo pipefail
bin=${1:-bin/goblocks}
peers="node1=127.0.0.1:3001,node2=127.0.0.1:3002,node3=127.0.0.1:3003"
pids=()
trap 'kill -TERM "${pids[@]}" 2>/dev/null; wait' INT TERM EXIT
for i in 1 2 3; do
  ReplicaName=node$i ReplicaAddress=127.0.0.1 Peers=$peers DataDir=data/node$i \
    "$bin" -port 300$i &
  pids+=($!)
done
echo "goblocks: 3 nodes on http://127.0.0.1:3001 .. :3003 (Ctrl-C to stop)" >&2
wait
