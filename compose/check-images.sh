#!/usr/bin/env bash
# check-images.sh IMAGE... — before `make up OBSERVABILITY=1`: make sure
# every image (Grafana, Jaeger) is on this machine, pulling the missing
# ones. When one can be neither found nor pulled, say what is missing and
# what to do, and fail before Compose prints a raw registry error.
set -u
missing=()
for img in "$@"; do
  docker image inspect "$img" >/dev/null 2>&1 && continue
  echo "check-images: $img is not here; pulling it" >&2
  if timeout 120 docker pull -q "$img" >/dev/null 2>&1; then
    continue
  fi
  missing+=("$img")
done
[ ${#missing[@]} -eq 0 ] && exit 0
cat >&2 <<MSG

OBSERVABILITY=1 adds Grafana and Jaeger, but ${missing[*]} is not on this
machine and could not be pulled (no container registry answers from here).
The rest of the lab works without them: \`make up\` (without
OBSERVABILITY=1) starts ZooKeeper, the nodes and Prometheus, whose images
are built locally. To add Grafana and Jaeger, on a machine that can pull:
  docker pull IMAGE && docker save IMAGE -o image.tar
then here: \`docker load -i image.tar\` for each, and \`make up
OBSERVABILITY=1\` again (GRAFANA_IMAGE and JAEGER_IMAGE choose other
names or versions).
MSG
exit 1
