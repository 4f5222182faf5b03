# shellcheck shell=bash
# Shared helpers for the offline image builders (sourced, not run).
#
# build_debian_image NAME IMAGE PACKAGES CONFIGURE_FN [--change ...]
#   Builds IMAGE from Debian packages when no image of that name exists:
#   debootstrap --variant=minbase --include=PACKAGES, CONFIGURE_FN "$rootfs"
#   adds the configuration, the tree is trimmed, packed into a cached
#   tarball and imported with `docker import --change ...`. The tarball is
#   cached under $CACHE_DIR keyed by a hash of the recipe (suite, packages
#   and the configure function's text), so a rebuild after `docker rmi` is a
#   plain import (seconds) and a changed recipe never reuses a stale tree.
#
# Environment: FORCE=1 rebuilds even if IMAGE exists; DEBIAN_SUITE
# (bookworm), DEBIAN_MIRROR (http://deb.debian.org/debian), CACHE_DIR
# (${XDG_CACHE_HOME:-~/.cache}/goblocks/images: outside the clone, so a
# fresh clone reuses it and the ~1 GB never sits in a working tree).
set -euo pipefail

DEBIAN_SUITE=${DEBIAN_SUITE:-bookworm}
DEBIAN_MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
CACHE_DIR=${CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/goblocks/images}

log() { echo "images: $*" >&2; }

build_debian_image() {
  local name=$1 image=$2 packages=$3 configure=$4
  shift 4
  if [ "${FORCE:-0}" != 1 ] && docker image inspect "$image" >/dev/null 2>&1; then
    log "$image present, reusing it"
    return 0
  fi
  mkdir -p "$CACHE_DIR"
  # The cache holds 700 MB tarballs: keep it out of git whatever the
  # top-level .gitignore says.
  [ -f "$CACHE_DIR/.gitignore" ] || echo '*' >"$CACHE_DIR/.gitignore"
  local key tarball
  key=$( { echo "$DEBIAN_SUITE $packages"; declare -f "$configure" trim_rootfs; } | sha256sum | cut -c1-12)
  tarball=$CACHE_DIR/$name-$DEBIAN_SUITE-$key.tar
  if [ ! -s "$tarball" ]; then
    [ "$(id -u)" = 0 ] || { log "debootstrap needs root (run as root or with sudo)"; return 1; }
    if ! command -v debootstrap >/dev/null; then
      log "installing debootstrap (Debian package)"
      { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null; } \
        || { log "debootstrap missing and apt-get failed: install it"; return 1; }
    fi
    local rootfs
    rootfs=$(mktemp -d "$CACHE_DIR/$name-rootfs.XXXXXX")
    # shellcheck disable=SC2064 # expand now: rootfs is local
    trap "umount -l '$rootfs/proc' 2>/dev/null || true; rm -rf '$rootfs'" EXIT
    log "building $image from Debian $DEBIAN_SUITE packages ($packages); takes a few minutes"
    debootstrap --variant=minbase --include="$packages" "$DEBIAN_SUITE" "$rootfs" "$DEBIAN_MIRROR" \
      >"$CACHE_DIR/$name-debootstrap.log" 2>&1 \
      || { log "debootstrap failed, see $CACHE_DIR/$name-debootstrap.log"; tail -n 20 "$CACHE_DIR/$name-debootstrap.log" >&2; return 1; }
    "$configure" "$rootfs"
    trim_rootfs "$rootfs"
    tar --numeric-owner -C "$rootfs" -cf "$tarball.tmp" .
    mv "$tarball.tmp" "$tarball"
    rm -rf "$rootfs"
    trap - EXIT
    # Older recipes' tarballs are dead weight.
    find "$CACHE_DIR" -maxdepth 1 -name "$name-$DEBIAN_SUITE-*.tar" ! -name "$(basename "$tarball")" -delete
  else
    log "using cached rootfs $tarball"
  fi
  docker import "$@" "$tarball" "$image" >/dev/null
  log "imported $image ($(docker image inspect -f '{{.Size}}' "$image" | awk '{printf "%d MB", $1/1e6}'))"
}

# trim_rootfs removes what a container never needs: package caches and
# lists, docs, man pages, locales.
trim_rootfs() {
  local r=$1
  rm -rf "$r"/var/cache/apt/archives/*.deb "$r"/var/cache/apt/*.bin "$r"/var/lib/apt/lists/* \
    "$r"/usr/share/doc/* "$r"/usr/share/man/* "$r"/usr/share/info/* "$r"/var/log/*.log \
    "$r"/var/cache/debconf/*-old "$r"/var/lib/dpkg/*-old
  find "$r"/usr/share/locale -mindepth 1 -maxdepth 1 ! -name 'locale.alias' -exec rm -rf {} + 2>/dev/null || true
}
