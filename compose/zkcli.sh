#!/usr/bin/env bash
# zkcli.sh COMMAND... — run zkCli.sh commands in the lab's ZooKeeper with
# the cluster's digest credentials (every znode carries an ACL for them;
# without them ZooKeeper answers "Insufficient permission"). Examples:
#   compose/zkcli.sh ls /goblocks/members
#   compose/zkcli.sh get /goblocks/ring
# Several commands: separate them with ';'.
set -eu
[ $# -gt 0 ] || { sed -n '2,7p' "$0" | sed 's/^# \{0,1\}//'; exit 2; }
auth=${GOBLOCKS_ZK_AUTH:-goblocks:lab-only-zookeeper-password}
compose=${COMPOSE:-$(docker compose version >/dev/null 2>&1 && echo "docker compose" || echo docker-compose)}
project=${PROJECT:-goblocks}
cmds=$(printf '%s\n' "$*" | tr ';' '\n')
printf 'addauth digest %s\n%s\nquit\n' "$auth" "$cmds" |
  $compose -p "$project" exec -T zookeeper zkCli.sh -server 127.0.0.1:2181 2>&1 |
  grep -v -e '^SLF4J:' -e '^WATCHER::' -e '^WatchedEvent' -e '^$' -e '^Connecting to' -e '^Welcome to' -e '^JLine' -e '^\[zk:'
