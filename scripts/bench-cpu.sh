#!/usr/bin/env bash
# Node CPU per client operation: the cost figure behind issue 13's ratios.
# Throughput on these shared two-core VMs moves ±30 % between sittings;
# CPU time per operation moves far less, and while the machine is
# saturated it is what throughput follows. Starts three nodes as
# ../shared/bench/sitting.sh does (static Peers, Pebble, fsync on), runs
# blockbench PUT, GET (after fill) and mixed, and prints for each phase the
# ops/s, p99, the nodes' CPU µs per operation (user+system, summed over the
# three nodes) and the WAL syncs per second they issued.
#
#   scripts/bench-cpu.sh BIN [SECONDS] [CONCURRENCY]
#
# Extra node settings: NODE_ENV="K=V K=V". PROFILE=DIR saves a 5 s CPU
# profile of n0 in the middle of each phase, and its allocation profile
# (since start) after it.
set -u
bin=$(realpath "${1:?path to the goblocks binary}"); d=${2:-10}; c=${3:-32}
bench=$(cd "$(dirname "$0")/../../shared/bench" && pwd)
out=$(mktemp -d); trap 'kill ${pids[*]:-} 2>/dev/null; wait 2>/dev/null; rm -rf "$out"' EXIT
(cd "$bench" && go build -o "$out/" ./blockbench) || exit 1
free() { python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }
ticks() { # user+system clock ticks of the given pids
  local t=0 p f
  for p in "$@"; do f=($(sed 's/.*) //' /proc/$p/stat)); t=$((t + f[11] + f[12])); done
  echo $t
}
syncs() { # WAL syncs the nodes report (pebble's fsync count)
  local n=0 i v
  for i in 0 1 2; do
    v=$(curl -sf -H "Authorization: Bearer $token" http://127.0.0.1:${ports[$i]}/metrics | awk '/^blocks_storage_wal_syncs_total /{print $2}')
    n=$(python3 -c "print(int(float('${v:-0}')) + $n)")
  done
  echo $n
}
token=$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')
ports=($(free) $(free) $(free)); peers=""; urls=""
for i in 0 1 2; do peers+="${peers:+,}n$i=127.0.0.1:${ports[$i]}"; urls+="${urls:+,}http://127.0.0.1:${ports[$i]}"; done
pids=()
for i in 0 1 2; do
  env Peers=$peers ReplicaName=n$i ReplicaAddress=127.0.0.1 DataDir="$out/n$i" LogLevel=warn ClusterToken=$token ${NODE_ENV:-} \
    "$bin" -port ${ports[$i]} >"$out/n$i.log" 2>&1 & pids+=($!)
done
for _ in $(seq 50); do curl -sf http://127.0.0.1:${ports[2]}/health >/dev/null && break; sleep 0.2; done
hz=$(getconf CLK_TCK)
phase() { # mode [extra blockbench flags]
  local mode=$1; shift
  local prof=""
  if [ -n "${PROFILE:-}" ]; then
    mkdir -p "$PROFILE"
    (sleep $((d / 2 - 2)); curl -sf -H "Authorization: Bearer $token" -o "$PROFILE/$mode.pprof" \
      "http://127.0.0.1:${ports[0]}/admin/pprof/profile?seconds=5"
     curl -sf -H "Authorization: Bearer $token" -o "$PROFILE/$mode.allocs.pprof" \
      "http://127.0.0.1:${ports[0]}/admin/pprof/allocs") & prof=$!
  fi
  local t0 s0 line t1 s1
  if [ "$*" = "-fill" ]; then # write every key first, outside the measured window
    "$out/blockbench" -targets $urls -mode get -fill -d 1ms -c $c -label fill >/dev/null
  fi
  t0=$(ticks ${pids[@]}); s0=$(syncs)
  line=$("$out/blockbench" -targets $urls -mode $mode -d ${d}s -c $c -label $mode)
  t1=$(ticks ${pids[@]}); s1=$(syncs)
  [ -z "$prof" ] || wait $prof
  python3 - "$line" $t0 $t1 $s0 $s1 $hz $d <<'PY'
import sys, re
line, t0, t1, s0, s1, hz, d = sys.argv[1], *map(float, sys.argv[2:])
f = dict(re.findall(r'(\w+)=("[^"]*"|\S+)', line))
ops = float(f['ops_per_s']) * d
print(f"{f['label']:6} {float(f['ops_per_s']):8.0f} ops/s  p99 {f['p99_ms']:>6} ms  errors {f['errors']}  "
      f"node CPU {(t1 - t0) / hz / ops * 1e6:6.0f} µs/op  WAL syncs {(s1 - s0) / d:6.0f}/s")
PY
}
phase put
phase get -fill
phase mixed
