#!/usr/bin/env bash
# Builds a Prometheus image from Debian's prometheus package (2.42, with
# promtool) for machines that reach no container registry, and imports it as
# $1 (default $PROMETHEUS_IMAGE or prom/prometheus:v2.42.0). Nothing is
# built when an image of that name exists. Like the official image, the
# entrypoint is the binary and the command its flags, so a compose file's
# `command:` works with either image.
set -euo pipefail
# shellcheck source=scripts/images/lib.sh
. "$(dirname "$0")/lib.sh"

image=${1:-${PROMETHEUS_IMAGE:-prom/prometheus:v2.42.0}}

configure_prometheus() {
  local r=$1
  mkdir -p "$r/prometheus" "$r/etc/prometheus/rules"
  chroot "$r" chown prometheus:prometheus /prometheus
}

build_debian_image prometheus "$image" prometheus configure_prometheus \
  --change 'USER prometheus' \
  --change 'WORKDIR /prometheus' \
  --change 'EXPOSE 9090' \
  --change 'ENTRYPOINT ["/usr/bin/prometheus"]' \
  --change 'CMD ["--config.file=/etc/prometheus/prometheus.yml", "--storage.tsdb.path=/prometheus", "--web.listen-address=:9090", "--web.enable-lifecycle"]'
