#!/usr/bin/env bash
# The base image of berth's container images, made on this machine (no registry is
# reachable): Debian bookworm minbase with python3 (3.11), python3-venv, ca-certificates
# and tini, built by debootstrap from the Debian mirror this machine's apt uses, then
# `docker import`ed as berth/base:bookworm.
#
#   hack/image/base.sh              # import (or keep) berth/base:bookworm
#   hack/image/base.sh --rebuild    # debootstrap again even if a rootfs is cached
#   DOCKER_HOST=unix:///run/berth-build/docker.sock hack/image/base.sh
#
# The rootfs tarball is cached in $BERTH_IMAGE_CACHE (default /var/cache/berth/image),
# named after a key of what goes into it (suite, architecture, packages, this recipe), so a
# second run only checks that the image carries the same key (well under a second) or
# imports the cached tarball (seconds); debootstrap runs once (about a minute).
#
# Environment: DOCKER_HOST (the daemon to import into; unset: the docker default),
# BERTH_DOCKER (the docker client; default /usr/bin/docker, the one matching Debian's
# dockerd), BERTH_DEBIAN_MIRROR (default: from apt's sources, else deb.debian.org).
set -euo pipefail

SUITE=bookworm
IMAGE="${BERTH_BASE_IMAGE:-berth/base:$SUITE}"
CACHE="${BERTH_IMAGE_CACHE:-/var/cache/berth/image}"
PACKAGES=(python3 python3-venv ca-certificates tini)
# Bump when the recipe below changes what ends up in the rootfs.
RECIPE=1
KEY_LABEL=dev.berth.base.key

say() { printf '[image/base] %s\n' "$*" >&2; }
die() { printf '[image/base] ERROR: %s\n' "$*" >&2; exit 1; }

rebuild=false
for arg in "$@"; do
  case "$arg" in
    --rebuild) rebuild=true ;;
    -h|--help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "${BASH_SOURCE[0]}"; exit 0 ;;
    *) die "unknown argument: $arg (see --help)" ;;
  esac
done

[ "$(id -u)" = 0 ] || die "run as root (debootstrap makes device nodes and chroots)"
docker="${BERTH_DOCKER:-}"
if [ -z "$docker" ]; then
  if [ -x /usr/bin/docker ]; then docker=/usr/bin/docker; else docker=$(command -v docker || true); fi
fi
if [ -z "$docker" ] || [ ! -x "$docker" ]; then die "no docker client (apt-get install docker.io)"; fi
"$docker" version --format '{{.Server.Version}}' >/dev/null 2>&1 \
  || die "no docker daemon at ${DOCKER_HOST:-the default socket} (hack/image/build.sh starts a private one)"

arch=$(dpkg --print-architecture)
key=$(printf '%s\n' "$SUITE" "$arch" "recipe=$RECIPE" "${PACKAGES[@]}" | sha256sum | cut -c1-16)
tarball="$CACHE/base-$SUITE-$arch-$key.tar"

have=$("$docker" image inspect --format "{{index .Config.Labels \"$KEY_LABEL\"}}" "$IMAGE" 2>/dev/null || true)
if [ "$have" = "$key" ] && ! $rebuild; then
  say "$IMAGE is up to date (key $key)"
  exit 0
fi

# The Debian archive apt uses here, preferring an entry for $SUITE (BERTH_DEBIAN_MIRROR wins).
. "$(dirname "${BASH_SOURCE[0]}")/../lib/debian.sh"

work=""
# debootstrap mounts /proc and /sys inside the target: never leave them behind, also
# when interrupted.
cleanup_work() {
  [ -n "$work" ] || return 0
  local m
  awk -v w="$work/" 'index($2, w) == 1 { print $2 }' /proc/mounts | sort -r \
    | while read -r m; do umount -l "$m" 2>/dev/null || true; done
  rm -rf --one-file-system "$work"
  work=""
}
trap cleanup_work EXIT

build_rootfs() {
  local debootstrap mirror rootfs log started include
  debootstrap=$(command -v debootstrap || echo /usr/sbin/debootstrap)
  [ -x "$debootstrap" ] || die "debootstrap not found (apt-get install debootstrap, or run hack/install-host.sh)"
  mirror=$(debian_mirror "$SUITE")
  mkdir -p "$CACHE"
  work=$(mktemp -d "$CACHE/work.XXXXXX")
  rootfs="$work/rootfs"
  log="$CACHE/debootstrap.log"
  say "debootstrap $SUITE ($arch, minbase + ${PACKAGES[*]}) from $mirror; log: $log"
  started=$SECONDS
  include=$(IFS=,; echo "${PACKAGES[*]}")
  if ! "$debootstrap" --variant=minbase --arch="$arch" --include="$include" \
      "$SUITE" "$rootfs" "$mirror" >"$log" 2>&1; then
    tail -n 15 "$log" >&2
    die "debootstrap failed (log: $log)"
  fi
  say "debootstrap done in $((SECONDS - started))s; trimming"
  # What a container never needs: downloaded packages, apt lists, docs (the copyright
  # files stay), man pages, translations, logs, the build machine's identity.
  rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/cache/apt/*.bin \
         "$rootfs"/var/lib/apt/lists/* "$rootfs"/usr/share/man/* "$rootfs"/usr/share/info/* \
         "$rootfs"/usr/share/locale/* "$rootfs"/var/log/*.log "$rootfs"/var/log/apt/* \
         "$rootfs"/etc/hostname "$rootfs"/etc/resolv.conf
  find "$rootfs/usr/share/doc" -mindepth 1 -not -type d -not -name copyright -delete
  find "$rootfs/usr/share/doc" -mindepth 1 -type d -empty -delete
  : >"$rootfs/etc/machine-id"
  chroot "$rootfs" /usr/bin/python3 -c 'import ensurepip, ssl, venv' \
    || die "python3 does not run in the new rootfs"
  tar --numeric-owner --sort=name -C "$rootfs" -cf "$work/rootfs.tar" .
  rm -f "$CACHE"/base-"$SUITE"-"$arch"-*.tar
  mv "$work/rootfs.tar" "$tarball"
  cleanup_work
  say "cached $tarball ($(du -h "$tarball" | cut -f1))"
}

# One build at a time per cache (two test runs, or a test and a person).
mkdir -p "$CACHE"
exec 9>"$CACHE/.lock"
flock 9

if $rebuild || [ ! -s "$tarball" ]; then
  build_rootfs
else
  say "using cached rootfs $tarball"
fi

say "docker import -> $IMAGE"
"$docker" import \
  --change "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" \
  --change "ENV LANG=C.UTF-8" \
  --change "LABEL $KEY_LABEL=$key" \
  --change 'CMD ["/usr/bin/python3"]' \
  --message "debootstrap --variant=minbase $SUITE + ${PACKAGES[*]}" \
  "$tarball" "$IMAGE" >/dev/null
say "$IMAGE ready ($("$docker" image inspect --format '{{.Size}}' "$IMAGE" | awk '{printf "%.0f MB", $1/1e6}'))"
