#!/usr/bin/env bash
# wait-nodes.sh N [TIMEOUT_SECONDS] — wait until the N replicas of the
# compose service `node` answer /health on their host ports and all of them
# report a committed ring of N members with no migration running or pending
# (GET /admin/cluster). Polls with a deadline; prints each node's host port
# and the time it took. COMPOSE is the compose command line (with -p/-f),
# as the Makefile passes it.
set -euo pipefail
n=${1:?usage: wait-nodes.sh N [TIMEOUT_SECONDS]}
timeout=${2:-180}
compose=${COMPOSE:-docker-compose}
start=$SECONDS
deadline=$((SECONDS + timeout))

fail() {
  echo "wait-nodes: $*" >&2
  $compose ps >&2 || true
  exit 1
}

# host_port I: the host port of replica I (the engine assigns them from a
# range, see docker-compose.yml).
host_port() { $compose port --index="$1" node 3000 2>/dev/null | head -n1 | sed 's/.*://'; }

ports=()
for ((i = 1; i <= n; i++)); do
  while :; do
    p=$(host_port "$i")
    [ -n "$p" ] && curl -fsS -m 2 "http://127.0.0.1:$p/health" >/dev/null 2>&1 && break
    [ $SECONDS -lt $deadline ] || fail "node $i of $n not healthy after ${timeout}s"
    sleep 0.5
  done
  ports+=("$p")
done
echo "wait-nodes: $n nodes healthy after $((SECONDS - start))s" >&2

# ring_state PORT: "<ring members> <migrating> <pending>" from /admin/cluster.
ring_state() {
  local body members
  body=$(curl -fsS -m 2 "http://127.0.0.1:$1/admin/cluster" 2>/dev/null) || return 1
  members=$(sed -n 's/.*"ring_members":\[\([^]]*\)\].*/\1/p' <<<"$body" | tr ',' '\n' | grep -c . || true)
  echo "$members $(sed -n 's/.*"migrating":\([a-z]*\).*/\1/p' <<<"$body") $(sed -n 's/.*"pending":\([a-z]*\).*/\1/p' <<<"$body")"
}

for p in "${ports[@]}"; do
  while :; do
    [ "$(ring_state "$p" || true)" = "$n false false" ] && break
    [ $SECONDS -lt $deadline ] || fail "node on :$p: ring not settled at $n members after ${timeout}s: $(ring_state "$p" || echo unreachable)"
    sleep 0.5
  done
done
echo "wait-nodes: ring of $n members committed, no migration running, after $((SECONDS - start))s" >&2
for ((i = 1; i <= n; i++)); do
  name=$(curl -fsS -m 2 "http://127.0.0.1:${ports[i - 1]}/health" | sed -n 's/.*"node":"\([^"]*\)".*/\1/p')
  echo "  http://localhost:${ports[i - 1]}  ${name:-?}"
done
