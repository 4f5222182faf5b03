#!/usr/bin/env bash
# Builds a ZooKeeper image from Debian packages (zookeeper 3.8 +
# default-jre-headless) for machines that reach no container registry, and
# imports it as $1 (default $ZOOKEEPER_IMAGE or zookeeper:3.8). Nothing is
# built when an image of that name exists (an official pull, or an earlier
# build). The container runs a standalone server in the foreground on :2181
# with data in /var/lib/zookeeper, the four-letter words ruok, srvr, mntr and
# stat, and no admin server (it would take :8080). Logs go to stderr.
set -euo pipefail
# shellcheck source=scripts/images/lib.sh
. "$(dirname "$0")/lib.sh"

image=${1:-${ZOOKEEPER_IMAGE:-zookeeper:3.8}}

configure_zookeeper() {
  local r=$1
  mkdir -p "$r/conf"
  # /conf/zoo.cfg is where the official image keeps its config, so one
  # path works for both images.
  cat >"$r/conf/zoo.cfg" <<'CFG'
tickTime=2000
initLimit=10
syncLimit=5
dataDir=/var/lib/zookeeper
clientPort=2181
maxClientCnxns=0
admin.enableServer=false
4lw.commands.whitelist=ruok,srvr,mntr,stat
autopurge.snapRetainCount=3
autopurge.purgeInterval=1
CFG
  # Debian ships myid with placeholder text, which a standalone server
  # rejects ("serverid ... is not a number").
  rm -f "$r/var/lib/zookeeper/myid" "$r/etc/zookeeper/conf/myid"
  mkdir -p "$r/var/lib/zookeeper"
  # On PATH, as in the official image: `docker compose exec zookeeper
  # zkCli.sh ...` works with either.
  # A wrapper, not a symlink: zkCli.sh finds zkEnv.sh next to its $0.
  printf '#!/bin/sh\nexec /usr/share/zookeeper/bin/zkCli.sh "$@"\n' >"$r/usr/local/bin/zkCli.sh"
  chmod 755 "$r/usr/local/bin/zkCli.sh"
  chroot "$r" chown -R zookeeper:zookeeper /var/lib/zookeeper
}

build_debian_image zookeeper "$image" zookeeper,default-jre-headless configure_zookeeper \
  --change 'USER zookeeper' \
  --change 'WORKDIR /var/lib/zookeeper' \
  --change 'EXPOSE 2181' \
  --change 'CMD ["java", "-Xmx512m", "-Dorg.slf4j.simpleLogger.defaultLogLevel=info", "-cp", "/etc/zookeeper/conf:/usr/share/java/zookeeper.jar:/usr/share/java/slf4j-simple.jar", "org.apache.zookeeper.server.quorum.QuorumPeerMain", "/conf/zoo.cfg"]'
