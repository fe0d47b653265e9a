"""The `runc` a repository's dockerd runs: docker's own runc, except for a restore whose
checkpoint asks for lazy pages (post-copy).

Docker 20.10's restore cannot ask runc for lazy pages, and containerd hands runc a copy
of the checkpoint under a name of its own. So dockerd finds this script first on its
PATH; for `runc restore` of a checkpoint holding postcopy.LAZY_MARKER it adds
`--lazy-pages` and points `--work-path` at the folder the marker names (where the page
fetch listens); every other call is runc's, unchanged, for the cost of one exec of sh.

In a dockerd whose containers run in a user namespace (USERNS_VARIABLE set in its
environment), CRIU restores inside that namespace, whose root is not the host's: it
could not read the copy of the checkpoint containerd unpacks into a folder only the
host's root may enter. There the script first makes that copy readable.
"""

from __future__ import annotations

from pathlib import Path

from berth_agent.checkpoint.postcopy import LAZY_MARKER

USERNS_VARIABLE = "BERTH_USERNS"

SCRIPT = f"""#!/bin/sh
# berth: runc, with CRIU's lazy pages for a restore that berth prepared.
real=/usr/sbin/runc
lazy=""
images=""
prev=""
for arg in "$@"; do
  case "$arg" in --image-path=*) dir="${{arg#--image-path=}}" ;; *) dir="" ;; esac
  [ "$prev" = "--image-path" ] && dir="$arg"
  [ -n "$dir" ] && images="$dir"
  if [ -n "$dir" ] && [ -f "$dir/{LAZY_MARKER}" ]; then lazy=$(cat "$dir/{LAZY_MARKER}"); fi
  prev="$arg"
done
if [ -n "${{{USERNS_VARIABLE}:-}}" ] && [ -n "$images" ]; then chmod -R a+rX "$images"; fi
[ -n "$lazy" ] || exec "$real" "$@"
count=$#
skip=""
added=""
for arg in "$@"; do
  if [ -n "$skip" ]; then skip=""; continue; fi
  case "$arg" in
    --work-path) skip=1 ;;
    --work-path=*) ;;
    restore)
      if [ -z "$added" ]; then set -- "$@" restore --lazy-pages --work-path "$lazy"; added=1
      else set -- "$@" "$arg"; fi ;;
    *) set -- "$@" "$arg" ;;
  esac
done
shift "$count"
exec "$real" "$@"
"""


def install(bin_dir: Path) -> Path:
    """Write the script as bin_dir/runc (anew only if it changed); returns bin_dir, to
    put first on dockerd's PATH."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    path = bin_dir / "runc"
    if not path.exists() or path.read_text() != SCRIPT:
        tmp = path.with_suffix(".tmp")
        tmp.write_text(SCRIPT)
        tmp.chmod(0o755)
        tmp.replace(path)
    return bin_dir
