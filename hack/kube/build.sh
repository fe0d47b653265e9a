#!/usr/bin/env bash
# Build (once) a real kube-apiserver and helm for integration tests, cached
# OUTSIDE the repository, and check that etcd is available.
#
#   hack/kube/build.sh            # build what is missing, print the bin dir
#   KUBE_CACHE=/some/dir hack/kube/build.sh
#
# Outputs (default KUBE_CACHE=/var/cache/berth/kube):
#   $KUBE_CACHE/bin/kube-apiserver   k8s.io/kubernetes v$KUBE_VERSION
#   $KUBE_CACHE/bin/helm             helm.sh/helm/v3 $HELM_VERSION
#   etcd                              Debian package etcd-server (/usr/bin/etcd)
#
# A binary is rebuilt only when it is missing or reports another version, so a
# second run takes well under a second. The versions live in hack/kube/go.mod
# (kube-apiserver: require k8s.io/kubernetes + replace of every k8s.io/* staging
# module by the published v0.X.Y of the same patch) and HELM_VERSION below.
#
# How to run the apiserver (flags that were verified) is in hack/kube/NOTES.md.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
KUBE_CACHE="${KUBE_CACHE:-/var/cache/berth/kube}"
BIN="$KUBE_CACHE/bin"
HELM_VERSION="${HELM_VERSION:-v3.22.0}"
# The Kubernetes version is whatever hack/kube/go.mod requires.
KUBE_VERSION="$(awk '$1=="require" && $2=="k8s.io/kubernetes" {print $3} $1=="k8s.io/kubernetes" && $2 ~ /^v/ {print $2}' "$here/go.mod" | head -n1)"
[ -n "$KUBE_VERSION" ] || { echo "build.sh: no k8s.io/kubernetes requirement in $here/go.mod" >&2; exit 1; }

GO="${GO:-$(command -v go || echo /usr/local/go/bin/go)}"
# Only the module proxy is reachable (no sum.golang.org); go.sum in hack/kube
# pins the hashes. Keep builds gentle on a shared 2-core machine.
export GOSUMDB="${GOSUMDB:-off}"
export GOTOOLCHAIN="${GOTOOLCHAIN:-local}"
export GOFLAGS="${GOFLAGS:--buildvcs=false} -p=${KUBE_BUILD_JOBS:-1}"
export CGO_ENABLED="${CGO_ENABLED:-0}"
NICE=(nice -n "${KUBE_NICE:-19}")

mkdir -p "$BIN"
log() { echo "build.sh: $*" >&2; }

# --- kube-apiserver ----------------------------------------------------------
have_version() { # $1 binary, $2 expected substring, $3... version command
	local bin="$1" want="$2"; shift 2
	[ -x "$bin" ] && "$bin" "$@" 2>/dev/null | grep -qF -- "$want"
}

if have_version "$BIN/kube-apiserver" "Kubernetes $KUBE_VERSION" --version; then
	log "kube-apiserver $KUBE_VERSION cached"
else
	log "building kube-apiserver $KUBE_VERSION (cold: ~4 min on 2 idle cores, seconds with a warm GOCACHE)"
	minor="${KUBE_VERSION#v}"; major="${minor%%.*}"; minor="${minor#*.}"; minor="${minor%%.*}"
	ldflags="-s -w"
	# Same stamps as kubernetes' hack/lib/version.sh, so that `--version`,
	# /version and helm's kubeVersion checks see the real version.
	for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
		ldflags+=" -X $pkg.gitVersion=$KUBE_VERSION -X $pkg.gitMajor=$major -X $pkg.gitMinor=$minor"
		ldflags+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
	done
	(cd "$here" && "${NICE[@]}" "$GO" build -trimpath -ldflags "$ldflags" \
		-o "$BIN/kube-apiserver.tmp" k8s.io/kubernetes/cmd/kube-apiserver)
	mv -f "$BIN/kube-apiserver.tmp" "$BIN/kube-apiserver"
	have_version "$BIN/kube-apiserver" "Kubernetes $KUBE_VERSION" --version ||
		{ log "built kube-apiserver does not report $KUBE_VERSION"; exit 1; }
fi

# --- helm ----------------------------------------------------------------------
# Built on its own module graph (helm needs newer k8s.io libraries than the
# apiserver pins above); helm.sh/helm/v3 has no replace directives.
if have_version "$BIN/helm" "Version:\"$HELM_VERSION\"" version; then
	log "helm $HELM_VERSION cached"
else
	log "building helm $HELM_VERSION"
	tmp="$(mktemp -d)"
	trap 'rm -rf "$tmp"' EXIT
	(cd "$tmp" && GOBIN="$tmp" "${NICE[@]}" "$GO" install -trimpath \
		-ldflags "-s -w -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION" \
		"helm.sh/helm/v3/cmd/helm@$HELM_VERSION")
	mv -f "$tmp/helm" "$BIN/helm"
	have_version "$BIN/helm" "Version:\"$HELM_VERSION\"" version ||
		{ log "built helm does not report $HELM_VERSION"; exit 1; }
fi

# --- etcd ----------------------------------------------------------------------
# Not built here: Debian's etcd-server (3.4.x on bookworm) is used.
if command -v etcd >/dev/null 2>&1; then
	log "etcd $(etcd --version 2>/dev/null | awk '/etcd Version/ {print $3}') at $(command -v etcd)"
else
	log "etcd missing: apt-get install -y etcd-server"
	exit 1
fi

echo "$BIN"
