#!/usr/bin/env bash
# Builds the operator image berth/operator:<version> (the chart's appVersion) on this
# machine, without a registry and without network inside the build:
#
#   hack/image/build.sh                    # base (cached) + operator image
#   hack/image/build.sh --save FILE.tar    # ... and `docker save` it, to load into nodes
#                                          # (docker load -i / ctr -n k8s.io images import)
#   DOCKER_HOST=unix:///var/run/docker.sock hack/image/build.sh   # into another daemon
#
# With DOCKER_HOST unset, a private dockerd is started for the build and stopped after
# it (lab/berth_lab/images.py; the same as `.venv/bin/python -m berth_lab.images build`):
# its data root /var/lib/berth-build/docker keeps the images and the layer cache between
# builds, so take the image out of it with --save.
#
# Steps: hack/image/base.sh (berth/base:bookworm, debootstrap once, cached); wheels on
# the host into build/image/wheels (berth's own from a clean copy of the sources; its
# dependencies for the image's CPython 3.11, pinned to the versions in .venv, downloaded
# once per change); then `docker build` of Dockerfile with the legacy builder and
# --network=none, which installs the wheels with pip --no-index.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
venv="$repo/.venv"
say() { printf '[image/build] %s\n' "$*" >&2; }
die() { printf '[image/build] ERROR: %s\n' "$*" >&2; exit 1; }

save=""
while [ $# -gt 0 ]; do
  case "$1" in
    --save) [ $# -ge 2 ] || die "--save needs a file"; save=$2; shift 2 ;;
    --save=*) save=${1#--save=}; shift ;;
    -h|--help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "${BASH_SOURCE[0]}"; exit 0 ;;
    *) die "unknown argument: $1 (see --help)" ;;
  esac
done
[ -x "$venv/bin/python" ] || die "no $venv: run hack/install-host.sh first"

if [ -z "${DOCKER_HOST:-}" ]; then
  # The private dockerd's lifecycle lives in one place (Python); it calls us back with
  # DOCKER_HOST set.
  say "DOCKER_HOST is unset: starting a private build dockerd"
  exec "$venv/bin/python" -m berth_lab.images build ${save:+--save "$save"}
fi

docker="${BERTH_DOCKER:-}"
if [ -z "$docker" ]; then
  if [ -x /usr/bin/docker ]; then docker=/usr/bin/docker; else docker=$(command -v docker || true); fi
fi
if [ -z "$docker" ] || [ ! -x "$docker" ]; then die "no docker client (apt-get install docker.io)"; fi
export BERTH_DOCKER="$docker" DOCKER_BUILDKIT=0

version=$(awk -F'"' '/^appVersion:/ { print $2 }' "$repo/charts/berth/Chart.yaml" 2>/dev/null || true)
[ -n "$version" ] || version=$(awk -F'"' '/^version *=/ { print $2; exit }' "$repo/pyproject.toml")
[ -n "$version" ] || die "no version in charts/berth/Chart.yaml (appVersion) or pyproject.toml"
base="${BERTH_BASE_IMAGE:-berth/base:bookworm}"
image="${BERTH_OPERATOR_IMAGE:-berth/operator:$version}"
started=$SECONDS

# --- 1. the base image ------------------------------------------------------------------
BERTH_BASE_IMAGE="$base" bash "$repo/hack/image/base.sh"
base_done=$SECONDS

# --- 2. wheels ------------------------------------------------------------------------------
out="$repo/build/image"
wheels="$out/wheels"
mkdir -p "$wheels/berth" "$wheels/deps" "$out/build-deps"
pip=("$venv/bin/python" -m pip --disable-pip-version-check --no-input -q)

# berth's own wheel, from a clean copy (a stale build/lib in the tree must not leak in).
# A fixed SOURCE_DATE_EPOCH makes the wheel byte-identical for identical sources, so the
# image's layer cache holds when nothing changed.
src=$(mktemp -d "$out/src.XXXXXX")
trap 'rm -rf "$src"' EXIT
tar -C "$repo" --exclude=__pycache__ --exclude='*.egg-info' --exclude='*.pyc' -cf - \
  pyproject.toml README.md common api hostagent operator cli lab | tar -C "$src" -xf -
build_deps_ok() { compgen -G "$out/build-deps/setuptools-*.whl" >/dev/null \
                  && compgen -G "$out/build-deps/wheel-*.whl" >/dev/null; }
if ! build_deps_ok; then
  say "downloading the build backend (setuptools, wheel) once into $out/build-deps"
  "${pip[@]}" download --dest "$out/build-deps" --only-binary=:all: "setuptools>=68" wheel
fi
rm -f "$wheels"/berth/*.whl
SOURCE_DATE_EPOCH=315532800 "${pip[@]}" wheel --no-deps --no-index \
  --find-links "$out/build-deps" --wheel-dir "$wheels/berth" "$src"
own=$(compgen -G "$wheels/berth/berth-*.whl" | head -n1) || die "no berth wheel was built"

# Dependencies for the image's Python (CPython 3.11, glibc 2.36), pinned to what .venv
# runs (the tests' versions). Downloaded again only when the pins or requirements change.
"$venv/bin/python" -m pip freeze --exclude-editable --disable-pip-version-check \
  | grep -v -e '^-e ' -e '^berth[= @]' >"$out/constraints.txt" || true
# pip does not widen a manylinux_2_X platform to older ones by itself: name them all.
machine=$(uname -m)
platform="manylinux_2_36_$machine"
platforms=(--platform "manylinux2014_$machine")
for minor in $(seq 18 36); do platforms+=(--platform "manylinux_2_${minor}_$machine"); done
requires=$("$venv/bin/python" - "$own" <<'EOF'
import sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as whl:
    meta = next(n for n in whl.namelist() if n.endswith(".dist-info/METADATA"))
    lines = whl.read(meta).decode().splitlines()
    print("\n".join(line for line in lines if line.startswith("Requires-Dist:")))
EOF
)
key=$(printf '%s\n' "$platform" cp311 "$requires" | cat - "$out/constraints.txt" | sha256sum | cut -c1-16)
if [ "$(cat "$wheels/deps/.key" 2>/dev/null)" != "$key" ]; then
  say "downloading dependency wheels for CPython 3.11 / $platform (pinned to .venv)"
  rm -rf "$wheels/deps"; mkdir -p "$wheels/deps"
  "${pip[@]}" download --dest "$wheels/deps" --only-binary=:all: \
    --python-version 3.11 --implementation cp --abi cp311 "${platforms[@]}" \
    -c "$out/constraints.txt" "$own"
  rm -f "$wheels"/deps/berth-*.whl
  echo "$key" >"$wheels/deps/.key"
else
  deps=("$wheels"/deps/*.whl)
  say "dependency wheels up to date (${#deps[@]} wheels)"
fi
wheels_done=$SECONDS

# --- 3. the image ---------------------------------------------------------------------------
say "docker build $image (FROM $base, offline)"
build=("$docker" build --network=none --build-arg "BASE=$base" --build-arg "VERSION=$version"
       -f "$repo/Dockerfile")
# The venv stage gets a tag of its own: its layers are the build cache, and untagged they
# would look like leftovers to `docker image prune`.
{ "${build[@]}" --target venv -t "${image%:*}-venv:${image##*:}" "$repo" \
    && "${build[@]}" -t "$image" "$repo"; } >"$out/docker-build.log" 2>&1 \
  || { tail -n 25 "$out/docker-build.log" >&2; die "docker build failed (log: $out/docker-build.log)"; }
size=$("$docker" image inspect --format '{{.Size}}' "$image" | awk '{printf "%.0f MB", $1/1e6}')
say "$image built ($size) in $((SECONDS - started))s: base $((base_done - started))s," \
    "wheels $((wheels_done - base_done))s, docker build $((SECONDS - wheels_done))s"

if [ -n "$save" ]; then
  mkdir -p "$(dirname "$save")"
  "$docker" save -o "$save" "$image"
  say "saved to $save ($(du -h "$save" | cut -f1)): docker load -i $save"
fi
echo "$image"
