#!/usr/bin/env bash
# wait-nodes.sh N [TIMEOUT_SECONDS] — wait until node-1..node-N answer
# /health on their host ports (the gateway publishes node-i on
# ${NODE_PORT_PREFIX:-300}i) and all of them report a committed ring of N
# members with no migration running or pending (GET /admin/cluster).
# Polls with a deadline and says how long it took.
set -euo pipefail
n=${1:?usage: wait-nodes.sh N [TIMEOUT_SECONDS]}
timeout=${2:-180}
prefix=${NODE_PORT_PREFIX:-300}
start=$SECONDS
deadline=$((SECONDS + timeout))

fail() {
  echo "wait-nodes: $*" >&2
  exit 1
}

# node_name PORT: the name the node behind PORT reports on /health.
node_name() { curl -fsS -m 2 "http://127.0.0.1:$1/health" 2>/dev/null | sed -n 's/.*"node":"\([^"]*\)".*/\1/p'; }

for ((i = 1; i <= n; i++)); do
  p=$prefix$i
  while :; do
    got=$(node_name "$p" || true)
    [ "$got" = "node-$i" ] && break
    # The gateway guarantees the match; anything else is a bug to report.
    [ -z "$got" ] || fail "port $p reached $got, not node-$i"
    [ $SECONDS -lt $deadline ] || fail "node-$i (:$p) not healthy after ${timeout}s"
    sleep 0.5
  done
done
echo "wait-nodes: $n nodes healthy after $((SECONDS - start))s" >&2

# ring_state PORT: "<ring members> <migrating> <pending>" from /admin/cluster.
ring_state() {
  local body members
  body=$(curl -fsS -m 2 "http://127.0.0.1:$1/admin/cluster" 2>/dev/null) || return 1
  members=$(sed -n 's/.*"ring_members":\[\([^]]*\)\].*/\1/p' <<<"$body" | tr ',' '\n' | grep -c . || true)
  echo "$members $(sed -n 's/.*"migrating":\([a-z]*\).*/\1/p' <<<"$body") $(sed -n 's/.*"pending":\([a-z]*\).*/\1/p' <<<"$body")"
}

for ((i = 1; i <= n; i++)); do
  p=$prefix$i
  while :; do
    [ "$(ring_state "$p" || true)" = "$n false false" ] && break
    [ $SECONDS -lt $deadline ] || fail "node-$i (:$p): ring not settled at $n members after ${timeout}s: $(ring_state "$p" || echo unreachable)"
    sleep 0.5
  done
done
echo "wait-nodes: ring of $n members committed, no migration running, after $((SECONDS - start))s" >&2
