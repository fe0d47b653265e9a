# shellcheck shell=bash
# Debian helpers shared by the install scripts; source this file.
#
#   debian_mirror [SUITE]             the Debian archive apt uses here (prefers SUITE)
#   debian_keyring                    a readable Debian archive keyring
#   debian_fetch CACHE SUITE PKG...   the Depends closure of PKG in SUITE, as .debs in CACHE
#   debian_cache_valid CACHE          CACHE holds exactly what its MANIFEST lists
#   debian_unpack CACHE DEST          every .deb of CACHE's MANIFEST unpacked into DEST
#
# debian_fetch works with a private apt configuration (its own sources.list listing only
# SUITE on the machine's mirror, its own lists, cache and an empty dpkg status), so a
# package of a newer suite (sid's CRIU, trixie-backports' Go) is fetched without touching
# the machine's apt sources or dpkg database. CACHE/MANIFEST lists "package version file
# sha256" lines; reinstalls reuse the .debs and never download again.
#
# The caller defines log and die (one line to stderr; die exits). debian_fetch holds the
# EXIT trap while it runs.

DEBIAN_MANIFEST=MANIFEST

# The Debian archive apt uses here (deb822 .sources or one-line lists), preferring an
# entry for SUITE; never a security, updates or backports archive. Falls back to
# BERTH_DEBIAN_MIRROR, then to Debian's redirector.
debian_mirror() {
  local suite="${1:-}" files=() f found
  if [ -n "${BERTH_DEBIAN_MIRROR:-}" ]; then echo "${BERTH_DEBIAN_MIRROR%/}"; return; fi
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources; do
    [ -f "$f" ] && files+=("$f")
  done
  found=""
  if [ ${#files[@]} -gt 0 ]; then
    found=$(awk -v suite="$suite" '
      function consider(types, uris, suites,   n, u, s, i, j, us, ss) {
        if (types !~ /(^|[ \t])deb([ \t]|$)/) return
        n = split(uris, us, /[ \t]+/); split(suites, ss, /[ \t]+/)
        for (i = 1; i <= n; i++) {
          u = us[i]; if (u == "" || u !~ /^https?:\/\//) continue
          for (j in ss) {
            s = ss[j]; if (s == "" || s ~ /-(security|updates|backports)$/ || s ~ /\//) continue
            if (s == suite && exact == "") exact = u
            if (any == "") any = u
          }
        }
      }
      function flush() { if (t != "") consider(t, us_, ss_); t = ""; us_ = ""; ss_ = "" }
      FNR == 1 { flush(); deb822 = (FILENAME ~ /\.sources$/) }
      deb822 && /^[ \t]*#/ { next }
      deb822 && /^[ \t]*$/ { flush(); next }
      deb822 && tolower($1) == "types:" { sub(/^[^:]*:[ \t]*/, ""); t = $0; next }
      deb822 && tolower($1) == "uris:" { sub(/^[^:]*:[ \t]*/, ""); us_ = $0; next }
      deb822 && tolower($1) == "suites:" { sub(/^[^:]*:[ \t]*/, ""); ss_ = $0; next }
      deb822 && tolower($1) == "enabled:" && tolower($2) == "no" { t = "disabled"; next }
      !deb822 && $1 == "deb" {
        i = 2
        if ($2 ~ /^\[/) { while (i <= NF && $i !~ /\]$/) i++; i++ }
        consider("deb", $i, $(i + 1))
      }
      END { flush(); if (exact != "") print exact; else if (any != "") print any }
    ' "${files[@]}")
  fi
  found="${found:-http://deb.debian.org/debian}"
  echo "${found%/}"
}

debian_keyring() {
  local k
  for k in ${BERTH_DEBIAN_KEYRING:-} /usr/share/keyrings/debian-archive-keyring.pgp \
           /usr/share/keyrings/debian-archive-keyring.gpg; do
    if [ -n "$k" ] && [ -r "$k" ]; then echo "$k"; return; fi
  done
  die "no Debian archive keyring found (apt-get install debian-archive-keyring)"
}

debian_cache_valid() { # $1 = cache
  local manifest="$1/$DEBIAN_MANIFEST" pkg ver file sum
  [ -s "$manifest" ] || return 1
  while read -r pkg ver file sum; do
    [ -f "$1/$file" ] || return 1
    [ "$(sha256sum "$1/$file" | cut -d' ' -f1)" = "$sum" ] || return 1
  done <"$manifest"
}

debian_fetch() { # $1 = cache, $2 = suite, $3... = packages
  local cache="$1" suite="$2"; shift 2
  local arch mirror keyring work
  arch=$(dpkg --print-architecture)
  mirror=$(debian_mirror "$suite")
  keyring=$(debian_keyring)
  work=$(mktemp -d /tmp/berth-apt.XXXXXX)
  # shellcheck disable=SC2064
  trap "rm -rf '$work'" EXIT  # die exits: the private apt tree goes with it
  mkdir -p "$work/lists/partial" "$work/cache/archives/partial" "$work/debs" "$cache"
  : >"$work/status"
  echo "deb [signed-by=$keyring] $mirror $suite main" >"$work/sources.list"
  # Everything apt reads or writes lives in $work; the machine's sources, preferences,
  # lists and dpkg status are not used. apt.conf.d (proxies, date checks) is.
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
  _debian_update() { # apt-get update exits 0 on some errors: also look for E: lines
    apt-get "${O[@]}" -qq update >"$work/update.log" 2>&1 && ! grep -q '^E:' "$work/update.log"
  }
  log "fetching the $suite package index from $mirror (keyring $keyring)"
  if ! _debian_update && grep -q 'is expired' "$work/update.log"; then
    log "WARNING: $mirror serves an expired $suite Release file; retrying with Acquire::Check-Valid-Until=false"
    O+=(-o "Acquire::Check-Valid-Until=false")
    _debian_update || true
  fi
  if grep -q '^E:' "$work/update.log" || ! ls "$work"/lists/*Packages* >/dev/null 2>&1; then
    cat "$work/update.log" >&2
    die "apt-get update of '$suite' from $mirror failed"
  fi

  local p cand
  for p in "$@"; do
    cand=$(apt-cache "${O[@]}" policy "$p" | awk '/Candidate:/ {print $2}')
    if [ -z "$cand" ] || [ "$cand" = "(none)" ]; then die "no '$p' package in $mirror $suite"; fi
  done
  # The Depends/Pre-Depends closure, resolved within $suite alone.
  local -a pkgs
  mapfile -t pkgs < <(apt-cache "${O[@]}" depends --recurse --no-recommends \
    --no-suggests --no-conflicts --no-breaks --no-replaces --no-enhances "$@" |
    grep -v '^[ <]' | sort -u)
  [ "${#pkgs[@]}" -ge "$#" ] || die "could not resolve the dependencies of $* in $suite"
  log "downloading ${#pkgs[@]} packages from $suite: ${pkgs[*]}"
  (cd "$work/debs" && apt-get "${O[@]}" -qq download "${pkgs[@]/%//$suite}") >"$work/dl.log" 2>&1 ||
    { cat "$work/dl.log" >&2; die "apt-get download from $mirror $suite failed"; }

  local f
  for f in "$work"/debs/*.deb; do
    printf '%s %s %s %s\n' "$(dpkg-deb -f "$f" Package)" "$(dpkg-deb -f "$f" Version)" \
      "$(basename "$f")" "$(sha256sum "$f" | cut -d' ' -f1)"
  done | sort >"$work/$DEBIAN_MANIFEST"
  # Replace the cache's contents in one go.
  find "$cache" -maxdepth 1 -type f \( -name '*.deb' -o -name "$DEBIAN_MANIFEST" \) -delete
  mv "$work"/debs/*.deb "$cache/"
  mv "$work/$DEBIAN_MANIFEST" "$cache/$DEBIAN_MANIFEST"
  rm -rf "$work"
  trap - EXIT
}

debian_unpack() { # $1 = cache, $2 = destination (created)
  local pkg ver file sum
  mkdir -p "$2"
  while read -r pkg ver file sum; do dpkg -x "$1/$file" "$2"; done <"$1/$DEBIAN_MANIFEST"
  cp "$1/$DEBIAN_MANIFEST" "$2/.berth-manifest"
}
