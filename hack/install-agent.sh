#!/usr/bin/env bash
# Makes a Debian 12/13 machine a berth host: Docker engine, btrfs-progs, CRIU >= 4.2,
# berth in /opt/berth/venv, and the agent installed from its enrollment bundle (made by
# `kubectl berth enroll`) as the systemd unit berth-agent.service. docs/install.md.
#
#   hack/install-agent.sh --bundle host-c.tar [--wheel berth-0.1.0-py3-none-any.whl]
#
# Without --wheel, berth is installed from this checkout. Run it again with a newer
# wheel or checkout to upgrade: the agent restarts, repositories keep running.
set -euo pipefail
repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
venv=/opt/berth/venv
bundle="" wheel=""
say() { printf '[install-agent] %s\n' "$*"; }
die() { printf '[install-agent] ERROR: %s\n' "$*" >&2; exit 1; }
while [ $# -gt 0 ]; do
  case "$1" in
    --bundle) bundle=${2:?--bundle needs a file}; shift 2 ;;
    --wheel) wheel=${2:?--wheel needs a file}; shift 2 ;;
    --venv) venv=${2:?--venv needs a directory}; shift 2 ;;
    *) die "unknown argument $1 (usage: $0 --bundle FILE [--wheel FILE] [--venv DIR])" ;;
  esac
done
[ "$(id -u)" = 0 ] || die "run as root"
[ -f "$bundle" ] || die "no bundle: --bundle FILE (from kubectl berth enroll MACHINE ...)"
[ -z "$wheel" ] || [ -f "$wheel" ] || die "no such wheel: $wheel"

packages=(docker.io containerd runc btrfs-progs iproute2 util-linux e2fsprogs python3-venv
          ca-certificates)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  say "installing Debian packages: ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
bash "$repo_root/hack/install-criu.sh"

[ -x "$venv/bin/python" ] || { say "creating $venv"; python3 -m venv "$venv"; }
say "installing berth into $venv"
"$venv/bin/pip" install -q --upgrade "${wheel:-$repo_root}"

"$venv/bin/berth-agent" install --bundle "$bundle"
say "done; check it with: systemctl status berth-agent, kubectl get machines.berth.dev"
