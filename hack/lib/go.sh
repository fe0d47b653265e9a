# shellcheck shell=bash
# The Go toolchain for berth's build scripts; source this file.
#
#   go_use MODDIR CACHE   sets GO (berth's own Go from hack/install-go.sh unless $GO is
#                         set), checks it meets MODDIR/go.mod's `go` line, and exports
#                         what a build needs on this network (GOSUMDB off: only the
#                         module proxy is reachable, go.sum pins the hashes; GOTOOLCHAIN
#                         local: no toolchain download behind the script's back), with
#                         caches under CACHE when there is no HOME (CI steps, units).
#
# The caller defines log (one line to stderr).

_berth_hack_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

go_use() { # $1 = module dir, $2 = cache dir
  local need have
  if [ -z "${GO:-}" ]; then
    GO=$(bash "$_berth_hack_dir/install-go.sh") || { log "could not install Go (hack/install-go.sh)"; exit 1; }
  fi
  [ -x "$GO" ] || { log "GO=$GO is not an executable"; exit 1; }
  need="$(awk '$1=="go" {print $2}' "$1/go.mod")"
  have="$("$GO" env GOVERSION)"; have="${have#go}"
  if [ "$(printf '%s\n%s\n' "$need" "$have" | sort -V | head -n1)" != "$need" ]; then
    log "$GO is Go $have; $1/go.mod needs >= $need (unset GO to use hack/install-go.sh's)"
    exit 1
  fi
  if [ -z "${HOME:-}" ] && [ -z "${GOCACHE:-}" ]; then
    export GOCACHE="$2/go-build" GOMODCACHE="${GOMODCACHE:-$2/go-mod}" GOPATH="${GOPATH:-$2/go}"
  fi
  export GOSUMDB="${GOSUMDB:-off}" GOTOOLCHAIN="${GOTOOLCHAIN:-local}" CGO_ENABLED="${CGO_ENABLED:-0}"
}
