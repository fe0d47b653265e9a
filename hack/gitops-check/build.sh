#!/usr/bin/env bash
# Build (once) gitops-check, which evaluates Argo CD health checks with gopher-lua and
# kstatus with sigs.k8s.io/cli-utils, into a cache OUTSIDE the repository.
#
#   hack/gitops-check/build.sh                 # build if needed, print the binary's path
#   GITOPS_CHECK_CACHE=/some/dir hack/gitops-check/build.sh
#
# Output (default GITOPS_CHECK_CACHE=/var/cache/berth/gitops-check):
#   $GITOPS_CHECK_CACHE/bin/gitops-check
#   $GITOPS_CHECK_CACHE/bin/gitops-check.stamp   hash of go.mod, go.sum, *.go and the Go version
#
# Rebuilt only when the binary is missing or the stamp differs, so a second run takes
# well under a second. The module versions are pinned in go.mod/go.sum here.
# Like hack/kube/build.sh: only the module proxy is reachable (no sum.golang.org), so
# GOSUMDB is off and go.sum pins the hashes; the build is niced for a shared 2-core box.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
CACHE="${GITOPS_CHECK_CACHE:-/var/cache/berth/gitops-check}"
BIN="$CACHE/bin"
OUT="$BIN/gitops-check"
STAMP="$OUT.stamp"
log() { echo "gitops-check/build.sh: $*" >&2; }

# Go: berth's own (hack/install-go.sh) unless $GO names another; its version is part of
# the stamp, so a new toolchain rebuilds.
. "$here/../lib/go.sh"

sources_hash() {
	local go_version
	go_version="$("$GO" env GOVERSION 2>/dev/null || echo none)"
	(
		cd "$here"
		cat go.mod go.sum build.sh
		for f in *.go; do printf '%s\n' "$f"; cat "$f"; done
		echo "$go_version"
	) | sha256sum | cut -d' ' -f1
}

mkdir -p "$BIN"
# Two test sessions (or a test and a person) may build at once: one builds, one waits.
exec 9>"$CACHE/build.lock"
flock 9

go_use "$here" "$CACHE"
want="$(sources_hash)"
if [ -x "$OUT" ] && [ "$(cat "$STAMP" 2>/dev/null)" = "$want" ]; then
	log "cached ($OUT)"
	echo "$OUT"
	exit 0
fi

export GOFLAGS="${GOFLAGS:--buildvcs=false} -mod=readonly -p=${GITOPS_CHECK_BUILD_JOBS:-2}"
export CGO_ENABLED=0

log "building gitops-check (gopher-lua, kstatus; cold: about 30 s)"
started=$SECONDS
(cd "$here" && nice -n "${GITOPS_CHECK_NICE:-10}" "$GO" build -trimpath -ldflags "-s -w" \
	-o "$OUT.tmp" .)
mv -f "$OUT.tmp" "$OUT"
echo "$want" >"$STAMP"
log "built $OUT in $((SECONDS - started))s"
echo "$OUT"
