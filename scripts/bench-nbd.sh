#!/usr/bin/env bash
# One sitting of volumes over NBD against the HTTP block API on the same
# 3-node cluster (ZooKeeper, RF 3, Pebble, fsync on), 4 KiB, 32 requests in
# flight, all figures from the same run:
#   - blockbench PUT and GET (after fill) over HTTP, 32 workers round-robin
#     over the three nodes;
#   - fio randwrite and randread (after fill) over NBD, one job per node at
#     iodepth 11/11/10 (32 in flight);
#   - the same fio runs against `nbdkit file` on the local disk (no
#     replication, no fsync: the ceiling of an NBD server here).
# Prints one line per figure and the NBD/HTTP ratios.
#
#   scripts/bench-nbd.sh bin/goblocks [SECONDS]
set -euo pipefail
bin=$(realpath "${1:?path to the goblocks binary}"); d=${2:-10}
bench=$(cd "$(dirname "$0")/../../shared/bench" 2>/dev/null && pwd || true)
out=$(mktemp -d); pids=()
# SIGKILL: a node stopped with SIGTERM would try a graceful leave, and
# wait for it, with ZooKeeper already gone.
cleanup() { kill -KILL "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$out"; }
trap cleanup EXIT
free() { python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }
[ -n "$bench" ] || { echo "bench-nbd: ../shared/bench (blockbench) not found" >&2; exit 1; }
(cd "$bench" && go build -o "$out/" ./blockbench) || exit 1

# ZooKeeper (Debian's package), as make run starts it.
zk=$(free)
mkdir -p "$out/zk"
cat > "$out/zoo.cfg" <<CFG
tickTime=500
initLimit=10
syncLimit=5
dataDir=$out/zk
clientPort=$zk
clientPortAddress=127.0.0.1
admin.enableServer=false
4lw.commands.whitelist=ruok
CFG
java -cp /etc/zookeeper/conf:/usr/share/java/zookeeper.jar:/usr/share/java/slf4j-simple.jar \
  -Dorg.slf4j.simpleLogger.defaultLogLevel=warn \
  org.apache.zookeeper.server.quorum.QuorumPeerMain "$out/zoo.cfg" >"$out/zk.log" 2>&1 & pids+=($!)
for _ in $(seq 100); do
  [ "$(echo ruok | (exec 3<>/dev/tcp/127.0.0.1/$zk && cat >&3 && cat <&3) 2>/dev/null)" = imok ] && break
  sleep 0.2
done

ports=($(free) $(free) $(free)); nbd=($(free) $(free) $(free)); urls=""
for i in 0 1 2; do
  urls+="${urls:+,}http://127.0.0.1:${ports[$i]}"
  ZKAddress=127.0.0.1:$zk ZKRoot=/bench ZKAuth=bench:bench-zk-secret ReplicaName=n$i ReplicaAddress=127.0.0.1 \
    DataDir="$out/n$i" NBDAddress=127.0.0.1:${nbd[$i]} LogLevel=warn \
    "$bin" -port "${ports[$i]}" >"$out/n$i.log" 2>&1 & pids+=($!)
done
for _ in $(seq 150); do
  n=$(curl -sf "http://127.0.0.1:${ports[2]}/admin/cluster" | python3 -c 'import sys,json;s=json.load(sys.stdin);print(len(s["ring_members"]) if not s.get("migrating") else 0)' 2>/dev/null || echo 0)
  [ "$n" = 3 ] && break
  sleep 0.2
done
[ "$n" = 3 ] || { echo "bench-nbd: the cluster did not form; logs in $out" >&2; trap - EXIT; exit 1; }
GOBLOCKS_NODES=127.0.0.1:${ports[0]} "$bin" volume create -size 1GiB bench >/dev/null

bb="$out/blockbench -d ${d}s -c 32 -targets $urls"
$bb -mode put -label http-put | tee "$out/r"
$bb -mode get -fill -label http-get | tee -a "$out/r"

# fio: one job per node (or the one nbdkit), 32 in flight in all, over the
# same 40 MB working set as blockbench's 10,000 keys.
fio_run() { # label rw uri...
  local label=$1 rw=$2; shift 2
  local args=() depths=(11 11 10) i=0
  [ $# = 1 ] && depths=(32)
  for uri in "$@"; do
    args+=(--name="j$i" --uri="$uri" --iodepth="${depths[$i]}"); i=$((i+1))
  done
  fio --ioengine=nbd --rw="$rw" --bs=4k --size=40M --time_based --runtime="$d" \
    --group_reporting --output-format=json "${args[@]}" 2>"$out/$label.err" | sed -n '/^{/,$p' > "$out/$label.json" ||
    { echo "bench-nbd: fio $label failed:" >&2; cat "$out/$label.err" >&2; exit 1; }
  python3 - "$out/$label.json" "$label" "$rw" <<'PY' | tee -a "$out/r"
import sys, json
j = json.load(open(sys.argv[1]))["jobs"][0]
side = j["read"] if "read" in sys.argv[3] else j["write"]
pct = side["clat_ns"].get("percentile", {})
p = lambda q: pct.get(q, 0) / 1e6
print(f'label={sys.argv[2]} ops_per_s={side["iops"]:.0f} p50_ms={p("50.000000"):.2f} p99_ms={p("99.000000"):.2f} errors={j["error"]}')
PY
}
uris=(); for i in 0 1 2; do uris+=("nbd://127.0.0.1:${nbd[$i]}/bench"); done
fio --ioengine=nbd --name=fill --uri="${uris[0]}" --rw=write --bs=1M --iodepth=8 --size=40M >/dev/null 2>&1
fio_run nbd-randwrite randwrite "${uris[@]}"
fio_run nbd-randread randread "${uris[@]}"

# The ceiling: nbdkit serving a file on the same disk.
kp=$(free)
truncate -s 1G "$out/nbdkit.img"
nbdkit -f -p "$kp" -i 127.0.0.1 file file="$out/nbdkit.img" & pids+=($!)
for _ in $(seq 50); do nbdinfo "nbd://127.0.0.1:$kp" >/dev/null 2>&1 && break; sleep 0.1; done
fio --ioengine=nbd --name=fill --uri="nbd://127.0.0.1:$kp" --rw=write --bs=1M --iodepth=8 --size=40M >/dev/null 2>&1
fio_run nbdkit-randwrite randwrite "nbd://127.0.0.1:$kp"
fio_run nbdkit-randread randread "nbd://127.0.0.1:$kp"

python3 - "$out/r" <<'PY'
import sys, re
f = {}
for l in open(sys.argv[1]):
    m = dict(re.findall(r'(\w+)=("[^"]*"|\S+)', l))
    if 'label' in m: f[m['label']] = m
for nbd, http, kit in (("nbd-randwrite", "http-put", "nbdkit-randwrite"), ("nbd-randread", "http-get", "nbdkit-randread")):
    a, b, k = (float(f[x]['ops_per_s']) for x in (nbd, http, kit))
    print(f"ratio {nbd} / {http}: {a/b:.3f}  (NBD {a:.0f}/s p99 {f[nbd]['p99_ms']} ms; HTTP {b:.0f}/s p99 {f[http]['p99_ms']} ms; nbdkit file {k:.0f}/s)")
PY
