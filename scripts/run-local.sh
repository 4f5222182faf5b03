#!/usr/bin/env bash
# Runs a local goblocks cluster in the foreground: a standalone ZooKeeper
# (Debian's package) on 127.0.0.1:2181 and three nodes on ports 3001-3003,
# data under ./data/. Ctrl-C makes every node leave gracefully, then stops
# ZooKeeper. Start a fourth node meanwhile to watch a rebalance:
#   ZKAuth=$(cat data/zkauth) ZKAddress=127.0.0.1:2181 ReplicaName=node4 ReplicaAddress=127.0.0.1 DataDir=data/node4 bin/goblocks -port 3004
set -euo pipefail
bin=${1:-bin/goblocks}
mkdir -p data/zookeeper
# ZooKeeper credentials, generated once and kept with the data: znodes
# carry a digest ACL for them, and the nodes share the cluster token
# through ZooKeeper under it.
[ -s data/zkauth ] || echo "goblocks:$(od -An -N18 -tx1 /dev/urandom | tr -d ' \n')" > data/zkauth
export ZKAuth=$(cat data/zkauth)
cat > data/zoo.cfg <<CFG
tickTime=500
initLimit=10
syncLimit=5
dataDir=$PWD/data/zookeeper
clientPort=2181
clientPortAddress=127.0.0.1
admin.enableServer=false
4lw.commands.whitelist=ruok,srvr,mntr
CFG
pids=()
cleanup() {
  kill -TERM "${pids[@]:1}" 2>/dev/null || true
  wait "${pids[@]:1}" 2>/dev/null || true
  kill -TERM "${pids[0]}" 2>/dev/null || true
  wait 2>/dev/null || true
}
trap cleanup INT TERM EXIT
java -cp /etc/zookeeper/conf:/usr/share/java/zookeeper.jar:/usr/share/java/slf4j-simple.jar \
  -Dorg.slf4j.simpleLogger.defaultLogLevel=warn \
  org.apache.zookeeper.server.quorum.QuorumPeerMain "$PWD/data/zoo.cfg" >data/zookeeper.log 2>&1 &
pids+=($!)
for _ in $(seq 100); do
  [ "$(echo ruok | (exec 3<>/dev/tcp/127.0.0.1/2181 && cat >&3 && cat <&3) 2>/dev/null)" = imok ] && break
  sleep 0.2
done
for i in 1 2 3; do
  ZKAddress=127.0.0.1:2181 ReplicaName=node$i ReplicaAddress=127.0.0.1 DataDir=data/node$i \
    StaleGracePeriod=${StaleGracePeriod:-1m} "$bin" -port 300$i &
  pids+=($!)
done
echo "goblocks: ZooKeeper on 127.0.0.1:2181, nodes on http://127.0.0.1:3001 .. :3003 (Ctrl-C to stop)" >&2
wait
