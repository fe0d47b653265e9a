#!/usr/bin/env bash
# hack/install-criu.sh — make a CRIU >= 4.2 available to runc/Docker.
#
# Why: on kernel 6.16+ criu < 4.2 cannot dump a TCP socket (SO_PASSSEC is
# refused: "sockets: Can't get 1:34 opt: Operation not supported");
# bookworm's 3.17 even fails `criu check`. Only Debian sid carries >= 4.2,
# and on bookworm it needs a newer glibc than the system's.
#
# How (Debian 12 and 13 alike, without touching the machine's apt sources
# or dpkg database):
#   1. a private apt configuration (own sources.list listing `sid main` on
#      the mirror the machine already uses, own lists/cache/status) resolves
#      the dependency closure of sid's criu and `apt-get download`s it;
#   2. the .debs are kept in $CACHE (re-runs and reinstalls never download
#      again) and unpacked with `dpkg -x` into $PREFIX;
#   3. $WRAPPER (a `criu` early in PATH) runs sid's criu with sid's dynamic
#      loader and libraries: ld-linux --library-path PREFIX/... criu "$@".
#      runc finds it by name through PATH and its `criu swrk 3` fd passing
#      survives the exec.
#
# Idempotent: if `criu` on PATH already is >= 4.2 and `criu check` passes,
# nothing is done.
#
# Environment overrides:
#   BERTH_CRIU_PREFIX   (default /opt/berth/criu)
#   BERTH_CRIU_CACHE    (default /var/cache/berth/criu)
#   BERTH_CRIU_WRAPPER  (default /usr/local/sbin/criu)
#   BERTH_DEBIAN_MIRROR (default: the Debian mirror from the apt sources,
#                        else Debian's redirector; BERTH_CRIU_MIRROR still works)
#   BERTH_CRIU_SUITE    (default sid)
#   BERTH_CRIU_REFRESH=1  ignore the cached .debs, download the current ones
#   BERTH_CRIU_FORCE=1    reinstall even if `criu` on PATH is fine
#   BERTH_CRIU_CHECK=0    skip `criu check` (installing into a root filesystem that
#                         is not running as a host, such as a chroot)
set -euo pipefail

MIN_VERSION=4.2
run_check=true
[ "${BERTH_CRIU_CHECK:-1}" = 0 ] && run_check=false
PREFIX=${BERTH_CRIU_PREFIX:-/opt/berth/criu}
CACHE=${BERTH_CRIU_CACHE:-/var/cache/berth/criu}
WRAPPER=${BERTH_CRIU_WRAPPER:-/usr/local/sbin/criu}
SUITE=${BERTH_CRIU_SUITE:-sid}
# What dockerd/containerd/runc see when started by systemd.
SERVICE_PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin

log() { printf 'install-criu: %s\n' "$*"; }
die() {
    printf 'install-criu: ERROR: %s\n' "$*" >&2
    cat >&2 <<EOF
install-criu: Other ways to get CRIU >= ${MIN_VERSION}:
  - Debian 13: install sid's criu natively (it only needs trixie's libraries):
      apt-get install -t sid criu   (after adding a sid source)
  - any distro: build it from https://github.com/checkpoint-restore/criu
      (tag v4.2 or later; needs gcc make pkg-config protobuf-c-compiler
      libprotobuf-c-dev libprotobuf-dev libnl-3-dev libnet-dev libcap-dev
      libgnutls28-dev libnftables-dev libbsd-dev uuid-dev python3-protobuf),
      then put the binary as 'criu' early in PATH (e.g. /usr/local/sbin).
  - point this script at another Debian mirror carrying ${SUITE}:
      BERTH_DEBIAN_MIRROR=http://mirror.example/debian $0
EOF
    exit 1
}

criu_version() { # $1 = criu command; prints e.g. 4.2.1 or nothing
    "$1" --version 2>/dev/null | awk '/^Version:/ {print $2; exit}' || true
}

criu_ok() { # $1 = criu command; true if >= MIN_VERSION and `criu check` passes
    local v
    v=$(criu_version "$1")
    [ -n "$v" ] && dpkg --compare-versions "$v" ge "$MIN_VERSION" &&
        { ! $run_check || "$1" check >/dev/null 2>&1; }
}

[ "$(id -u)" = 0 ] || die "must run as root (writes $PREFIX, $CACHE, $WRAPPER)"
for tool in apt-get apt-cache dpkg dpkg-deb sha256sum; do
    command -v "$tool" >/dev/null || die "'$tool' not found: this script needs a Debian system (12 or 13)"
done

# runc reads /etc/criu/runc.conf (docker 20.10 has no flags for these):
#   tcp-established: without it CRIU refuses a container holding an established TCP
#     connection;
#   skip-in-flight: without it a client connecting at the moment of the checkpoint (a
#     connection still in the listen queue) fails the whole dump; skipped, that client
#     sees a reset and retries, as it would after any brief outage.
mkdir -p /etc/criu
for option in tcp-established skip-in-flight; do
    if ! grep -qx "$option" /etc/criu/runc.conf 2>/dev/null; then
        echo "$option" >>/etc/criu/runc.conf
        log "enabled $option in /etc/criu/runc.conf"
    fi
done

# ---------------------------------------------------------------- fast path
current=$(command -v criu || true)
if [ -z "${BERTH_CRIU_FORCE:-}" ] && [ -n "$current" ] && criu_ok "$current"; then
    log "criu $(criu_version "$current") at $current is >= $MIN_VERSION and 'criu check' passes: nothing to do"
    exit 0
fi
if [ -n "${BERTH_CRIU_FORCE:-}" ]; then
    log "BERTH_CRIU_FORCE is set: (re)installing regardless of '${current:-no criu}' on PATH"
elif [ -n "$current" ]; then
    log "criu on PATH: $current, version '$(criu_version "$current")' — not usable (need >= $MIN_VERSION and a passing 'criu check')"
else
    log "no criu on PATH"
fi

# ------------------------------------------------------------- architecture
arch=$(dpkg --print-architecture)
case "$arch" in
    amd64) triplet=x86_64-linux-gnu; ldso="ld-linux-x86-64.so.2" ;;
    arm64) triplet=aarch64-linux-gnu; ldso="ld-linux-aarch64.so.1" ;;
    *) die "architecture '$arch' is not handled (only amd64, arm64)" ;;
esac

# ------------------------------------------------------------ get the .debs
BERTH_DEBIAN_MIRROR=${BERTH_CRIU_MIRROR:-${BERTH_DEBIAN_MIRROR:-}}
. "$(dirname "${BASH_SOURCE[0]}")/lib/debian.sh"
manifest=$CACHE/$DEBIAN_MANIFEST
if [ -z "${BERTH_CRIU_REFRESH:-}" ] && debian_cache_valid "$CACHE"; then
    log "using the cached .debs in $CACHE (BERTH_CRIU_REFRESH=1 to download current ones)"
else
    debian_fetch "$CACHE" "$SUITE" criu
    v=$(awk '$1 == "criu" {print $2}' "$manifest")
    dpkg --compare-versions "$v" ge "$MIN_VERSION" || die "$SUITE only has criu $v (< $MIN_VERSION)"
fi

log "pinned package versions ($manifest):"
while read -r pkg ver file sum; do printf '    %-26s %s\n' "$pkg" "$ver"; done <"$manifest"

# ---------------------------------------------------------------- unpack
libpath() { echo "$1/usr/lib/$triplet:$1/lib/$triplet"; }
find_ldso() { # $1 = root
    local d
    for d in "$1/usr/lib/$triplet" "$1/lib/$triplet" "$1/usr/lib64" "$1/lib64"; do
        [ -e "$d/$ldso" ] && { echo "$d/$ldso"; return; }
    done
}

prefix_runs() { # $1 = root; true if its criu starts with its own loader
    local l; l=$(find_ldso "$1")
    [ -n "$l" ] && [ -x "$1/usr/sbin/criu" ] &&
        "$l" --library-path "$(libpath "$1")" "$1/usr/sbin/criu" --version >/dev/null 2>&1
}

if [ -f "$PREFIX/.berth-manifest" ] && cmp -s "$PREFIX/.berth-manifest" "$manifest" &&
   prefix_runs "$PREFIX"; then
    log "$PREFIX already holds exactly these packages"
else
    stage=$PREFIX.new.$$
    rm -rf "$stage"
    debian_unpack "$CACHE" "$stage"
    mkdir -p "$stage/usr/lib/criu"   # private, empty plugin dir (CRIU_LIBS_DIR)
    sl=$(find_ldso "$stage"); [ -n "$sl" ] || { rm -rf "$stage"; die "no $ldso in the unpacked libc6"; }
    # Every library must resolve inside the prefix (not to the host's).
    out=$("$sl" --library-path "$(libpath "$stage")" --list "$stage/usr/sbin/criu" 2>&1) ||
        { rm -rf "$stage"; die "criu's libraries do not load: $out"; }
    bad=$(echo "$out" | awk -v root="$stage/" '/=>/ && index($3, root) != 1' || true)
    if [ -n "$bad" ]; then
        rm -rf "$stage"
        die "libraries not provided by the downloaded packages (add their packages): $bad"
    fi
    if [ -e "$PREFIX" ]; then mv "$PREFIX" "$PREFIX.old.$$"; fi
    mkdir -p "$(dirname "$PREFIX")"
    mv "$stage" "$PREFIX"
    rm -rf "$PREFIX.old.$$"
    log "unpacked into $PREFIX"
fi

# --------------------------------------------------------------- wrapper
ld=$(find_ldso "$PREFIX")
marker="# berth: hack/install-criu.sh"
wrapper_text="#!/bin/sh
$marker — CRIU from Debian $SUITE in a private prefix.
# Runs sid's criu with sid's loader and libraries; found by runc via PATH.
# exec keeps every fd (runc's 'criu swrk 3' socket) and the argv.
P=$PREFIX
CRIU_LIBS_DIR=\${CRIU_LIBS_DIR:-\$P/usr/lib/criu}; export CRIU_LIBS_DIR
exec \"$ld\" --library-path \"$(libpath "$PREFIX")\" \"\$P/usr/sbin/criu\" \"\$@\"
"
if [ -e "$WRAPPER" ] && ! grep -qF "$marker" "$WRAPPER"; then
    die "$WRAPPER exists and was not written by this script; move it away first"
fi
if [ "$(cat "$WRAPPER" 2>/dev/null)" != "${wrapper_text%$'\n'}" ]; then
    mkdir -p "$(dirname "$WRAPPER")"
    printf '%s' "$wrapper_text" >"$WRAPPER.tmp.$$"
    chmod 0755 "$WRAPPER.tmp.$$"
    mv "$WRAPPER.tmp.$$" "$WRAPPER"
    log "wrote $WRAPPER"
else
    log "$WRAPPER is up to date"
fi

# ---------------------------------------------------------------- verify
v=$(criu_version "$WRAPPER")
[ -n "$v" ] || die "$WRAPPER --version gives no version: $("$WRAPPER" --version 2>&1 | head -n3)"
dpkg --compare-versions "$v" ge "$MIN_VERSION" || die "$WRAPPER is criu $v, need >= $MIN_VERSION"
if ! $run_check; then
    log "BERTH_CRIU_CHECK=0: 'criu check' skipped"
elif ! chk=$("$WRAPPER" check 2>&1); then
    die "'criu check' fails with criu $v — the kernel (CONFIG_CHECKPOINT_RESTORE and friends) or this environment (e.g. a chroot that is not the root of its own mount namespace) lacks something CRIU needs:
$chk"
fi

# runc looks criu up by name in the PATH of dockerd/containerd.
svc=$(PATH=$SERVICE_PATH command -v criu || true)
[ "$svc" = "$WRAPPER" ] ||
    die "with the service PATH ($SERVICE_PATH) 'criu' is $svc, not $WRAPPER: install the wrapper earlier in PATH (BERTH_CRIU_WRAPPER)"
cur=$(command -v criu || true)
if [ "$cur" != "$WRAPPER" ]; then
    log "WARNING: in this shell's PATH 'criu' is '$cur' (version '$(criu_version "${cur:-false}")'), shadowing $WRAPPER; services use $WRAPPER"
fi
log "OK: criu $v ($WRAPPER -> $PREFIX)$($run_check && echo ", 'criu check' passes")"
