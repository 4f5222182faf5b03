#!/usr/bin/env bash
# nodes.sh — the lab's nodes as a browser on this host reaches them: for
# each gateway port ${NODE_PORT_PREFIX:-300}1..9 with a running node, its
# name, URL, NBD address (volumes: nbd://ADDRESS/VOLUME), health, container
# and container address. COMPOSE is the
# compose command line (with -p/-f), as the Makefile passes it.
set -uo pipefail
prefix=${NODE_PORT_PREFIX:-300}
nbd_prefix=${NBD_PORT_PREFIX:-1080}
compose=${COMPOSE:-docker-compose}

# containers: "IP NAME" of every container of the node service.
containers=$(for id in $($compose ps -q node 2>/dev/null); do
  docker inspect -f '{{range .NetworkSettings.Networks}}{{.IPAddress}} {{end}}{{.Name}}' "$id" 2>/dev/null
done)

printf '%-8s %-24s %-17s %-12s %-22s %s\n' NAME URL NBD HEALTH CONTAINER ADDRESS
for i in 1 2 3 4 5 6 7 8 9; do
  url=http://localhost:$prefix$i
  health=$(curl -sS -m 2 "$url/health" 2>/dev/null) || continue
  name=$(sed -n 's/.*"node":"\([^"]*\)".*/\1/p' <<<"$health")
  [ -n "$name" ] || continue # the gateway's 503: no node-$i running
  status=$(sed -n 's/.*"status":"\([^"]*\)".*/\1/p' <<<"$health")
  addr=$(curl -sS -m 2 "$url/admin/cluster" 2>/dev/null | sed -n 's/.*"addr":"\([^"]*\)","blocks".*/\1/p')
  container=$(awk -v ip="${addr%:*}" '$1 == ip {sub("^/", "", $2); print $2}' <<<"$containers")
  printf '%-8s %-24s %-17s %-12s %-22s %s\n' "$name" "$url" "localhost:$nbd_prefix$i" "${status:-?}" "${container:--}" "${addr:--}"
done
