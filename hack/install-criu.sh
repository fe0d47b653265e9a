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
#   BERTH_CRIU_MIRROR   (default: the Debian mirror from the apt sources,
#                        else http://deb.debian.org/debian)
#   BERTH_CRIU_SUITE    (default sid)
#   BERTH_CRIU_REFRESH=1  ignore the cached .debs, download the current ones
#   BERTH_CRIU_FORCE=1    reinstall even if `criu` on PATH is fine
set -euo pipefail

MIN_VERSION=4.2
PREFIX=${BERTH_CRIU_PREFIX:-/opt/berth/criu}
CACHE=${BERTH_CRIU_CACHE:-/var/cache/berth/criu}
WRAPPER=${BERTH_CRIU_WRAPPER:-/usr/local/sbin/criu}
SUITE=${BERTH_CRIU_SUITE:-sid}
MANIFEST_NAME=MANIFEST
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
      BERTH_CRIU_MIRROR=http://mirror.example/debian $0
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
        "$1" check >/dev/null 2>&1
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

# ----------------------------------------------------------- mirror, keyring
detect_mirror() { # prints "URI KEYRING" of the machine's main Debian source
    local f
    for f in /etc/apt/sources.list.d/*.sources; do
        [ -r "$f" ] || continue
        awk '
            function flush() {
                if (types ~ /(^| )deb( |$)/ && uris != "" && suites != "" && suites !~ /-security/) {
                    split(uris, u, " "); print u[1], keyring; found = 1; exit
                }
                types = uris = suites = keyring = ""
            }
            /^[ \t]*#/ { next }
            /^[ \t]*$/ { flush(); next }
            tolower($1) == "types:"     { sub(/^[^:]*:[ \t]*/, ""); types = $0 }
            tolower($1) == "uris:"      { sub(/^[^:]*:[ \t]*/, ""); uris = $0 }
            tolower($1) == "suites:"    { sub(/^[^:]*:[ \t]*/, ""); suites = $0 }
            tolower($1) == "signed-by:" { sub(/^[^:]*:[ \t]*/, ""); if ($0 ~ /^\//) keyring = $1 }
            END { if (!found) flush() }
        ' "$f" | head -n1
    done | head -n1
    for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
        [ -r "$f" ] || continue
        awk '
            $1 != "deb" { next }
            { kr = ""; i = 2
              if ($2 ~ /^\[/) { while (i <= NF) { if ($i ~ /signed-by=/) { kr = $i; sub(/.*signed-by=/, "", kr); sub(/\]$/, "", kr) }
                                                  if ($i ~ /\]$/) { i++; break } ; i++ } }
              if ($(i+1) ~ /-security/) next
              if ($i ~ /debian/) { print $i, kr; exit } }
        ' "$f"
    done | head -n1
}
read -r det_mirror det_keyring < <(detect_mirror | head -n1) || true
MIRROR=${BERTH_CRIU_MIRROR:-${det_mirror:-http://deb.debian.org/debian}}
MIRROR=${MIRROR%/}
KEYRING=
for k in ${BERTH_CRIU_KEYRING:-} "$det_keyring" \
         /usr/share/keyrings/debian-archive-keyring.pgp \
         /usr/share/keyrings/debian-archive-keyring.gpg; do
    if [ -n "$k" ] && [ -r "$k" ]; then KEYRING=$k; break; fi
done

# ------------------------------------------------------------ get the .debs
mkdir -p "$CACHE"
manifest=$CACHE/$MANIFEST_NAME

cache_valid() {
    [ -s "$manifest" ] || return 1
    local pkg ver file sum
    while read -r pkg ver file sum; do
        [ -f "$CACHE/$file" ] || return 1
        [ "$(sha256sum "$CACHE/$file" | cut -d' ' -f1)" = "$sum" ] || return 1
    done <"$manifest"
}

download_debs() {
    [ -n "$KEYRING" ] || die "no Debian archive keyring found (install the 'debian-archive-keyring' package)"
    local work; work=$(mktemp -d /tmp/berth-criu-apt.XXXXXX)
    # shellcheck disable=SC2064
    trap "rm -rf '$work'" EXIT
    mkdir -p "$work/lists/partial" "$work/cache/archives/partial" "$work/debs"
    : >"$work/status"
    echo "deb [signed-by=$KEYRING] $MIRROR $SUITE main" >"$work/sources.list"
    # Everything apt reads or writes lives in $work; the machine's sources,
    # preferences, lists and dpkg status are not used. apt.conf.d (proxies) is.
    local -a O=(
        -o "Dir::Etc::SourceList=$work/sources.list"
        -o "Dir::Etc::SourceParts=/dev/null"
        -o "Dir::Etc::Preferences=/dev/null"
        -o "Dir::Etc::PreferencesParts=/dev/null"
        -o "Dir::State::Lists=$work/lists"
        -o "Dir::State::status=$work/status"
        -o "Dir::Cache=$work/cache"
        -o "APT::Architecture=$arch"
        -o "APT::Architectures=$arch"
        -o "Acquire::Languages=none"
        -o "Acquire::IndexTargets::deb::DEP-11::DefaultEnabled=false"
        -o "Acquire::IndexTargets::deb::DEP-11-icons::DefaultEnabled=false"
        -o "Acquire::IndexTargets::deb::DEP-11-icons-small::DefaultEnabled=false"
        -o "Acquire::IndexTargets::deb::DEP-11-icons-hidpi::DefaultEnabled=false"
        -o "Acquire::IndexTargets::deb::Contents-deb::DefaultEnabled=false"
        -o "Acquire::IndexTargets::deb::CNF::DefaultEnabled=false"
    )
    # apt fetches as the unprivileged _apt user: let it into $work.
    chmod 0755 "$work"
    if id _apt >/dev/null 2>&1; then
        chown _apt "$work/lists/partial" "$work/cache/archives/partial" "$work/debs"
    fi
    apt_update() { # apt-get update exits 0 on some errors: also look for E: lines
        apt-get "${O[@]}" -qq update >"$work/update.log" 2>&1 && ! grep -q '^E:' "$work/update.log"
    }
    log "fetching the $SUITE package index from $MIRROR (keyring $KEYRING)"
    if ! apt_update && grep -q 'is expired' "$work/update.log"; then
        # Frozen/snapshot mirrors serve a Release whose Valid-Until has
        # passed; its signature is still checked.
        log "WARNING: $MIRROR serves an expired $SUITE Release file; retrying with Acquire::Check-Valid-Until=false"
        O+=(-o "Acquire::Check-Valid-Until=false")
        apt_update || true
    fi
    if grep -q '^E:' "$work/update.log" || ! ls "$work"/lists/*Packages* >/dev/null 2>&1; then
        cat "$work/update.log" >&2
        die "apt-get update of '$SUITE' from $MIRROR failed"
    fi

    local cand
    cand=$(apt-cache "${O[@]}" policy criu | awk '/Candidate:/ {print $2}')
    if [ -z "$cand" ] || [ "$cand" = "(none)" ]; then die "no 'criu' package in $MIRROR $SUITE"; fi
    dpkg --compare-versions "$cand" ge "$MIN_VERSION" ||
        die "$SUITE at $MIRROR only has criu $cand (< $MIN_VERSION)"

    # Dependency closure (Depends/Pre-Depends only) of criu in $SUITE.
    local -a pkgs
    mapfile -t pkgs < <(apt-cache "${O[@]}" depends --recurse --no-recommends \
        --no-suggests --no-conflicts --no-breaks --no-replaces --no-enhances criu |
        grep -v '^[ <]' | sort -u)
    [ "${#pkgs[@]}" -gt 1 ] || die "could not resolve the dependencies of criu in $SUITE"
    log "downloading ${#pkgs[@]} packages: ${pkgs[*]}"

    (cd "$work/debs" && apt-get "${O[@]}" -qq download "${pkgs[@]/%//$SUITE}") >"$work/dl.log" 2>&1 ||
        { cat "$work/dl.log" >&2; die "apt-get download from $MIRROR $SUITE failed"; }

    local new=$CACHE/.new.$$
    rm -rf "$new"; mkdir -p "$new"
    local f pkg ver
    for f in "$work"/debs/*.deb; do
        pkg=$(dpkg-deb -f "$f" Package); ver=$(dpkg-deb -f "$f" Version)
        cp "$f" "$new/"
        printf '%s %s %s %s\n' "$pkg" "$ver" "$(basename "$f")" "$(sha256sum "$f" | cut -d' ' -f1)"
    done | sort >"$new/$MANIFEST_NAME"
    # Replace the cache contents in one go.
    find "$CACHE" -maxdepth 1 -type f \( -name '*.deb' -o -name "$MANIFEST_NAME" \) -delete
    mv "$new"/*.deb "$CACHE/"
    mv "$new/$MANIFEST_NAME" "$manifest"
    rmdir "$new"
    rm -rf "$work"; trap - EXIT
}

if [ -z "${BERTH_CRIU_REFRESH:-}" ] && cache_valid; then
    log "using the cached .debs in $CACHE (BERTH_CRIU_REFRESH=1 to download current ones)"
else
    download_debs
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
    rm -rf "$stage"; mkdir -p "$stage"
    while read -r pkg ver file sum; do dpkg -x "$CACHE/$file" "$stage"; done <"$manifest"
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
    cp "$manifest" "$stage/.berth-manifest"
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
if ! chk=$("$WRAPPER" check 2>&1); then
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
log "OK: criu $v ($WRAPPER -> $PREFIX), 'criu check' passes"
