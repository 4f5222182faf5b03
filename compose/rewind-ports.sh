#!/usr/bin/env bash
# rewind-ports.sh RANGE IMAGE — make Docker hand out RANGE from its start.
#
# For a published host-port range ("3001-3009:3000") the engine gives each
# container the port after the one it handed out LAST TIME, wrapping at the
# end of the range; it remembers that position until the daemon restarts.
# So after `make down`, a new `make up` would put the nodes on 3004-3006
# instead of 3001-3003. This script moves the position to the end of the
# range by starting throwaway containers (the node image with a static
# in-memory config, removed at once) until one is given the last port: the
# next container then gets the first free port of the range. Harmless when
# the engine behaves otherwise: it stops after one pass over the range.
set -euo pipefail
range=${1:?usage: rewind-ports.sh FIRST-LAST IMAGE}
image=${2:?usage: rewind-ports.sh FIRST-LAST IMAGE}
first=${range%-*} last=${range#*-}
for ((i = first; i <= last; i++)); do
  # A throwaway token: a node refuses to start without one, and a probe
  # that exited has no port to report.
  id=$(docker run -d -p "$range:3000" -e Peers=probe=127.0.0.1:3000 -e ReplicaName=probe \
    -e ClusterToken=rewind-ports-probe-only -e Storage=memory -e DataDir=/tmp \
    --health-cmd NONE --entrypoint /goblocks "$image" node 2>/dev/null) || exit 0
  port=$(docker port "$id" 3000/tcp 2>/dev/null | head -n1 | sed 's/.*://') || port=""
  docker rm -f "$id" >/dev/null
  # Empty port: the container died; nothing more to learn.
  [ -n "$port" ] && [ "$port" != "$last" ] || exit 0
done
