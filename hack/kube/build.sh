#!/usr/bin/env bash
# Build (once) a real kube-apiserver, kubectl and helm for the lab and the tests, cached
# OUTSIDE the repository, and check that etcd is available.
#
#   hack/kube/build.sh            # build what is missing, print the bin dir
#   hack/kube/build.sh --with-flux   # and Flux's controllers (the gitops tests ask for them)
#   KUBE_CACHE=/some/dir hack/kube/build.sh
#
# Outputs (default KUBE_CACHE=/var/cache/berth/kube):
#   $KUBE_CACHE/bin/kube-apiserver   k8s.io/kubernetes v$KUBE_VERSION
#   $KUBE_CACHE/bin/kubectl          the same module graph and version
#   $KUBE_CACHE/bin/helm             helm.sh/helm/v3 $HELM_VERSION
#   $KUBE_CACHE/bin/external-dns     sigs.k8s.io/external-dns $EXTERNAL_DNS_VERSION, and its
#   $KUBE_CACHE/crds/dnsendpoints.externaldns.k8s.io.yaml (the lab's DNS)
#   $KUBE_CACHE/bin/source-controller, kustomize-controller  Flux's, $FLUX_VERSION, and
#   $KUBE_CACHE/crds/flux/*.yaml their CRDs, with --with-flux only: about 15 min cold,
#                                    for the gitops tests alone, so not in every install
#   $KUBE_CACHE/crds/monitoring/*.yaml  the Prometheus Operator's ServiceMonitor and
#                                    PrometheusRule CRDs, $PROMETHEUS_OPERATOR_VERSION (chart tests)
#   etcd                              Debian package etcd-server (/usr/bin/etcd)
#
# Go comes from hack/install-go.sh (Debian's golang-1.26) unless $GO names another.
# A binary is rebuilt only when it is missing or reports another version, so a
# second run takes well under a second. The versions live in hack/kube/go.mod
# (kube-apiserver: require k8s.io/kubernetes + replace of every k8s.io/* staging
# module by the published v0.X.Y of the same patch) and HELM_VERSION below.
#
# How to run the apiserver (flags that were verified) is in hack/kube/NOTES.md.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
with_flux=false
for arg in "$@"; do
	case "$arg" in
	--with-flux) with_flux=true ;;
	*) echo "build.sh: unknown argument $arg (known: --with-flux)" >&2; exit 2 ;;
	esac
done
KUBE_CACHE="${KUBE_CACHE:-/var/cache/berth/kube}"
BIN="$KUBE_CACHE/bin"
HELM_VERSION="${HELM_VERSION:-v3.22.0}"
EXTERNAL_DNS_VERSION="${EXTERNAL_DNS_VERSION:-v0.20.0}"
# Flux's two controllers of one release (Flux v2.8); v1.10 needs Go 1.27.
FLUX_VERSION="${FLUX_VERSION:-v1.9.6}"
PROMETHEUS_OPERATOR_VERSION="${PROMETHEUS_OPERATOR_VERSION:-v0.85.0}"
# The Kubernetes version is whatever hack/kube/go.mod requires.
KUBE_VERSION="$(awk '$1=="require" && $2=="k8s.io/kubernetes" {print $3} $1=="k8s.io/kubernetes" && $2 ~ /^v/ {print $2}' "$here/go.mod" | head -n1)"
[ -n "$KUBE_VERSION" ] || { echo "build.sh: no k8s.io/kubernetes requirement in $here/go.mod" >&2; exit 1; }

. "$here/../lib/go.sh"
# Keep builds gentle on a shared 2-core machine.
export GOFLAGS="${GOFLAGS:--buildvcs=false} -p=${KUBE_BUILD_JOBS:-1}"
require_go() { [ -n "${GO_READY:-}" ] || { go_use "$here" "$KUBE_CACHE"; GO_READY=1; }; }
NICE=(nice -n "${KUBE_NICE:-19}")

mkdir -p "$BIN"
log() { echo "build.sh: $*" >&2; }
# Two installs at once (a test and a person): one builds, the other waits.
exec 9>"$KUBE_CACHE/build.lock"
flock 9

# --- kube-apiserver ----------------------------------------------------------
have_version() { # $1 binary, $2 expected substring, $3... version command
	local bin="$1" want="$2" said; shift 2
	# Read the whole answer first: `| grep -q` stops reading at the match, and a binary
	# that writes a second line then dies of SIGPIPE, which pipefail took for "not
	# this version" (kubectl's "Kustomize Version" line: rebuilt for nothing, or failed).
	[ -x "$bin" ] || return 1
	said="$("$bin" "$@" 2>/dev/null)" || return 1
	grep -qF -- "$want" <<<"$said"
}

# kube-apiserver and kubectl: one module graph, one version, the same stamps.
kube_ldflags() {
	local minor major flags pkg
	minor="${KUBE_VERSION#v}"; major="${minor%%.*}"; minor="${minor#*.}"; minor="${minor%%.*}"
	flags="-s -w"
	# Same stamps as kubernetes' hack/lib/version.sh, so that `--version`,
	# /version, `kubectl version` and helm's kubeVersion checks see the real version.
	for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
		flags+=" -X $pkg.gitVersion=$KUBE_VERSION -X $pkg.gitMajor=$major -X $pkg.gitMinor=$minor"
		flags+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
	done
	echo "$flags"
}
build_kube_command() { # $1 command name, $2 expected version text, $3... version command
	local name="$1" want="$2"; shift 2
	if have_version "$BIN/$name" "$want" "$@"; then
		log "$name $KUBE_VERSION cached"
		return
	fi
	require_go
	log "building $name $KUBE_VERSION with $("$GO" env GOVERSION) (cold: a few minutes on 2 idle cores, seconds with a warm GOCACHE)"
	(cd "$here" && "${NICE[@]}" "$GO" build -trimpath -ldflags "$(kube_ldflags)" \
		-o "$BIN/$name.tmp" "k8s.io/kubernetes/cmd/$name")
	mv -f "$BIN/$name.tmp" "$BIN/$name"
	have_version "$BIN/$name" "$want" "$@" || { log "built $name does not report $KUBE_VERSION"; exit 1; }
}
build_kube_command kube-apiserver "Kubernetes $KUBE_VERSION" --version
build_kube_command kubectl "Client Version: $KUBE_VERSION" version --client

# --- helm ----------------------------------------------------------------------
# Built on its own module graph (helm needs newer k8s.io libraries than the
# apiserver pins above); helm.sh/helm/v3 has no replace directives.
# Like helm's Makefile, stamp the Kubernetes version helm assumes when it has no
# cluster (`helm template`, `helm lint`): unstamped it is v1.20, and a chart with
# `kubeVersion: >=1.28` would not render. The stamp file records what was built.
helm_stamp="$BIN/helm.stamp"
if have_version "$BIN/helm" "Version:\"$HELM_VERSION\"" version &&
	[ "$(cat "$helm_stamp" 2>/dev/null)" = "$HELM_VERSION" ]; then
	log "helm $HELM_VERSION cached"
else
	require_go
	log "building helm $HELM_VERSION (cold: ~1-2 min)"
	tmp="$(mktemp -d)"
	trap 'rm -rf "$tmp"' EXIT
	helm_mod="$(cd "$tmp" && "$GO" mod download -json "helm.sh/helm/v3@$HELM_VERSION" |
		awk -F'"' '$2=="GoMod" {print $4}')"
	# k8s.io/client-go v0.X.Y is Kubernetes 1.X.
	k8s_minor="$(awk '$1=="k8s.io/client-go" {split($2, v, "."); print v[2]}' "$helm_mod")"
	[ -n "$k8s_minor" ] || { log "no k8s.io/client-go in $helm_mod"; exit 1; }
	ldflags="-s -w -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION"
	for pkg in helm.sh/helm/v3/pkg/chartutil helm.sh/helm/v3/pkg/lint/rules; do
		ldflags+=" -X $pkg.k8sVersionMajor=1 -X $pkg.k8sVersionMinor=$k8s_minor"
	done
	(cd "$tmp" && GOBIN="$tmp" "${NICE[@]}" "$GO" install -trimpath -ldflags "$ldflags" \
		"helm.sh/helm/v3/cmd/helm@$HELM_VERSION")
	mv -f "$tmp/helm" "$BIN/helm"
	have_version "$BIN/helm" "Version:\"$HELM_VERSION\"" version ||
		{ log "built helm does not report $HELM_VERSION"; exit 1; }
	echo "$HELM_VERSION" >"$helm_stamp"
fi

# --- external-dns --------------------------------------------------------------------
# The lab's DNS: external-dns (its rfc2136 provider) writes the records berth puts in
# DNSEndpoints into a BIND 9 (Debian's bind9). Its own module graph and go.sum, like
# helm's; v0.22 and later need modules the proxy here does not serve (exoscale,
# openshift) or a newer Go. Its DNSEndpoint CRD goes beside the binaries for the lab.
edns_crd="$KUBE_CACHE/crds/dnsendpoints.externaldns.k8s.io.yaml"
edns_version() { # it says its version on stderr
	local said
	[ -x "$BIN/external-dns" ] || return 1
	said="$("$BIN/external-dns" --version 2>&1)" || return 1
	grep -qxF -- "$EXTERNAL_DNS_VERSION" <<<"$said"
}
if edns_version && [ -s "$edns_crd" ]; then
	log "external-dns $EXTERNAL_DNS_VERSION cached"
else
	require_go
	log "building external-dns $EXTERNAL_DNS_VERSION (cold: ~7 min, mostly module downloads)"
	edns_tmp="$(mktemp -d)"
	trap 'rm -rf "${tmp:-}" "$edns_tmp"' EXIT
	edns_dir="$(cd "$edns_tmp" && "$GO" mod download -json "sigs.k8s.io/external-dns@$EXTERNAL_DNS_VERSION" |
		awk -F'"' '$2=="Dir" {print $4}')"
	[ -f "$edns_dir/config/crd/standard/dnsendpoints.externaldns.k8s.io.yaml" ] ||
		{ log "no DNSEndpoint CRD in $edns_dir"; exit 1; }
	(cd "$edns_tmp" && GOBIN="$edns_tmp" "${NICE[@]}" "$GO" install -trimpath -ldflags \
		"-s -w -X sigs.k8s.io/external-dns/pkg/apis/externaldns.Version=$EXTERNAL_DNS_VERSION" \
		"sigs.k8s.io/external-dns@$EXTERNAL_DNS_VERSION")
	mv -f "$edns_tmp/external-dns" "$BIN/external-dns"
	mkdir -p "$(dirname "$edns_crd")"
	cp "$edns_dir/config/crd/standard/dnsendpoints.externaldns.k8s.io.yaml" "$edns_crd"
	edns_version ||
		{ log "built external-dns does not report $EXTERNAL_DNS_VERSION"; exit 1; }
fi

# --- Flux: source-controller and kustomize-controller -------------------------------
# Each module replaces its ./api with the nested module of the same repository, which a
# module zip leaves out, so `go install mod@version` refuses them. So: the module's
# source copied out of the module cache, its api module (at the version its go.mod
# requires) copied in as ./api, and built there against its own go.sum. Their CRDs,
# from the same modules, go beside the binaries. No --version flag: a stamp file.
# The module proxy here refuses a few versions in their graphs ("403 This module version is
# not available"); each is replaced by the newest served patch release of its minor.
flux_crds="$KUBE_CACHE/crds/flux"
declare -A FLUX_REPLACES=(
	[source-controller]="github.com/fluxcd/pkg/artifact@v0.18.3=github.com/fluxcd/pkg/artifact@v0.18.1"
	[kustomize-controller]=""
)
build_flux_controller() { # $1 = source-controller | kustomize-controller
	local name="$1" module="github.com/fluxcd/$1" dir api_version api_dir work replace
	if [ -x "$BIN/$name" ] && [ "$(cat "$BIN/$name.stamp" 2>/dev/null)" = "$FLUX_VERSION" ] &&
		compgen -G "$flux_crds/*${name%-controller}*.yaml" >/dev/null; then
		log "$name $FLUX_VERSION cached"
		return
	fi
	require_go
	log "building $name $FLUX_VERSION (cold: several minutes, mostly module downloads)"
	work="$(mktemp -d)"
	dir="$(cd "$work" && "$GO" mod download -json "$module@$FLUX_VERSION" | awk -F'"' '$2=="Dir" {print $4}')"
	[ -f "$dir/main.go" ] || { log "no main.go in $module@$FLUX_VERSION ($dir)"; rm -rf "$work"; exit 1; }
	api_version="$(awk -v m="$module/api" '$1==m && $2 ~ /^v/ {print $2; exit}' "$dir/go.mod")"
	api_dir="$(cd "$work" && "$GO" mod download -json "$module/api@$api_version" | awk -F'"' '$2=="Dir" {print $4}')"
	cp -r "$dir" "$work/src" && cp -r "$api_dir" "$work/src/api" && chmod -R u+w "$work/src"
	for replace in ${FLUX_REPLACES[$name]}; do
		(cd "$work/src" && "$GO" mod edit -replace "$replace")
	done
	# -mod=mod: a replacement's hash is not in the module's go.sum (GOSUMDB is off here).
	(cd "$work/src" && "${NICE[@]}" "$GO" build -mod=mod -trimpath -ldflags "-s -w" \
		-o "$BIN/$name.tmp" .) ||
		{ rm -rf "$work"; exit 1; }
	mv -f "$BIN/$name.tmp" "$BIN/$name"
	mkdir -p "$flux_crds"
	cp "$dir"/config/crd/bases/*.yaml "$flux_crds/"
	rm -rf "$work"
	echo "$FLUX_VERSION" >"$BIN/$name.stamp"
}
if $with_flux; then
	# Both cores: the gitops tests wait for this, and nothing else runs meanwhile.
	flux_goflags="${GOFLAGS% -p=*} -p=${FLUX_BUILD_JOBS:-2}"
	GOFLAGS="$flux_goflags" build_flux_controller source-controller
	GOFLAGS="$flux_goflags" build_flux_controller kustomize-controller
fi

# --- the Prometheus Operator's CRDs ----------------------------------------------------
# Nothing built: the chart's ServiceMonitor and PrometheusRule are checked against the
# CRDs of the operator's own module.
monitoring_crds="$KUBE_CACHE/crds/monitoring"
if [ "$(cat "$monitoring_crds/.version" 2>/dev/null)" = "$PROMETHEUS_OPERATOR_VERSION" ]; then
	log "Prometheus Operator CRDs $PROMETHEUS_OPERATOR_VERSION cached"
else
	require_go
	log "fetching the Prometheus Operator's CRDs $PROMETHEUS_OPERATOR_VERSION"
	po_tmp="$(mktemp -d)"
	po_dir="$(cd "$po_tmp" && "$GO" mod download -json \
		"github.com/prometheus-operator/prometheus-operator@$PROMETHEUS_OPERATOR_VERSION" |
		awk -F'"' '$2=="Dir" {print $4}')"
	rm -rf "$po_tmp"
	mkdir -p "$monitoring_crds"
	for kind in servicemonitors prometheusrules; do
		cp "$po_dir/example/prometheus-operator-crd/monitoring.coreos.com_$kind.yaml" "$monitoring_crds/" ||
			{ log "no $kind CRD in $po_dir"; exit 1; }
	done
	echo "$PROMETHEUS_OPERATOR_VERSION" >"$monitoring_crds/.version"
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
