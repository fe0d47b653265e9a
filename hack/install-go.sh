#!/usr/bin/env bash
# hack/install-go.sh — the Go toolchain berth builds its Go tools with (kube-apiserver,
# kubectl, helm, gitops-check), on Debian 12 and 13 alike; prints the `go` binary's path.
#
# Why: bookworm's golang-go is 1.19 and trixie's 1.24, while the Kubernetes and Helm
# modules berth pins need newer. Debian's trixie-backports carries golang-1.26, whose
# `go` is a static binary that finds its GOROOT next to itself, so it runs on any Debian.
#
# How, without touching the machine's apt sources or dpkg database (hack/lib/debian.sh):
# the .debs (golang-1.26-go and golang-1.26-src) are fetched through a private apt
# configuration, kept in $CACHE, and unpacked with `dpkg -x` into $PREFIX;
# $PREFIX/bin/go links to the toolchain. If no `go` is on PATH, /usr/local/bin/go links
# there too (a Go the machine already has is left alone; berth's scripts use $PREFIX's).
#
# Idempotent: a second run checks the cache and the prefix (well under a second).
#
# Environment overrides:
#   BERTH_GO_PREFIX    (default /opt/berth/go)
#   BERTH_GO_CACHE     (default /var/cache/berth/go)
#   BERTH_GO_PACKAGE   (default golang-1.26)
#   BERTH_GO_SUITE     (default trixie-backports)
#   BERTH_GO_REFRESH=1 ignore the cached .debs, download the current ones
#   BERTH_DEBIAN_MIRROR  (default: the Debian mirror from the apt sources)
set -euo pipefail

PREFIX=${BERTH_GO_PREFIX:-/opt/berth/go}
CACHE=${BERTH_GO_CACHE:-/var/cache/berth/go}
PACKAGE=${BERTH_GO_PACKAGE:-golang-1.26}
SUITE=${BERTH_GO_SUITE:-trixie-backports}
LINK=/usr/local/bin/go

log() { printf 'install-go: %s\n' "$*" >&2; }
die() { printf 'install-go: ERROR: %s\n' "$*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "must run as root (writes $PREFIX and $CACHE)"
for tool in apt-get apt-cache dpkg dpkg-deb sha256sum; do
  command -v "$tool" >/dev/null || die "'$tool' not found: this script needs a Debian system (12 or 13)"
done
. "$(dirname "${BASH_SOURCE[0]}")/lib/debian.sh"

toolchain="$PREFIX/usr/lib/go-${PACKAGE#golang-}/bin/go"
mkdir -p "$(dirname "$CACHE")"
# Two installs at once (a test and a person): one fetches, the other waits.
exec 9>"$CACHE.lock"
flock 9

if [ -z "${BERTH_GO_REFRESH:-}" ] && debian_cache_valid "$CACHE"; then
  :
else
  debian_fetch "$CACHE" "$SUITE" "$PACKAGE-go"
fi

if [ -f "$PREFIX/.berth-manifest" ] && cmp -s "$PREFIX/.berth-manifest" "$CACHE/$DEBIAN_MANIFEST" &&
   "$toolchain" version >/dev/null 2>&1; then
  :
else
  stage=$PREFIX.new.$$
  rm -rf "$stage"
  debian_unpack "$CACHE" "$stage"
  staged_go="$stage/usr/lib/go-${PACKAGE#golang-}/bin/go"
  [ -x "$staged_go" ] || { rm -rf "$stage"; die "$PACKAGE-go holds no $staged_go"; }
  mkdir -p "$stage/bin"
  ln -s "../usr/lib/go-${PACKAGE#golang-}/bin/go" "$stage/bin/go"
  ln -s "../usr/lib/go-${PACKAGE#golang-}/bin/gofmt" "$stage/bin/gofmt"
  if [ -e "$PREFIX" ]; then mv "$PREFIX" "$PREFIX.old.$$"; fi
  mkdir -p "$(dirname "$PREFIX")"
  mv "$stage" "$PREFIX"
  rm -rf "$PREFIX.old.$$"
  log "unpacked $(awk -v p="$PACKAGE-go" '$1 == p {print $1, $2}' "$CACHE/$DEBIAN_MANIFEST") into $PREFIX"
fi

version=$("$PREFIX/bin/go" version) || die "$PREFIX/bin/go does not run"
if [ -L "$LINK" ] && [ "$(readlink "$LINK")" = "$PREFIX/bin/go" ]; then
  :
elif [ ! -e "$LINK" ] && ! command -v go >/dev/null; then
  ln -s "$PREFIX/bin/go" "$LINK"
  log "linked $LINK"
fi
log "OK: $version ($PREFIX/bin/go)"
echo "$PREFIX/bin/go"
