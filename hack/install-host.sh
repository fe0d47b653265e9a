#!/usr/bin/env bash
# Makes a bare Debian 12 or 13 machine ready to be a berth host and a test machine:
# Docker engine, btrfs-progs, iproute2, cryptsetup and etcd from Debian; CRIU >= 4.2
# (hack/install-criu.sh) and Go (hack/install-go.sh) from newer Debian suites through a
# private apt configuration; kube-apiserver, kubectl and helm built from the Go module
# proxy (hack/kube/build.sh); and a virtual environment (.venv) with berth installed.
# Idempotent: a second run changes nothing and takes seconds.
#
#   hack/install-host.sh                    # install, then check each piece really works
#   hack/install-host.sh --no-host-checks   # install only: for a root filesystem that is
#                                           # not running as a host (a chroot, an image)
#
# The checks (criu check, a throwaway dockerd, btrfs on a loop device, network
# namespaces) stop the script with what is missing.
set -euo pipefail

host_checks=true
for arg in "$@"; do
  case "$arg" in
    --no-host-checks) host_checks=false ;;
    -h|--help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "${BASH_SOURCE[0]}"; exit 0 ;;
    *) printf '[install-host] ERROR: unknown argument: %s (see --help)\n' "$arg" >&2; exit 2 ;;
  esac
done

repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
venv="$repo_root/.venv"
say() { printf '[install-host] %s\n' "$*"; }
die() { printf '[install-host] ERROR: %s\n' "$*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "run as root (berth hosts manage loop devices, namespaces and dockerd)"
. /etc/os-release
case "${VERSION_CODENAME:-}" in
  bookworm|trixie) ;;
  *) say "warning: tested on Debian 12 (bookworm) and 13 (trixie), this is ${PRETTY_NAME:-unknown}" ;;
esac

# --- Debian packages -------------------------------------------------------------
packages=(docker.io containerd runc btrfs-progs iproute2 iptables util-linux e2fsprogs
          busybox-static rsync zstd openssl etcd-server kmod procps psmisc curl ca-certificates
          python3-venv iputils-ping debootstrap cryptsetup bind9 prometheus git)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  say "installing Debian packages: ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
else
  say "Debian packages present"
fi
# The distribution's etcd, named and prometheus services are not ours: the lab starts
# its own etcd (for its API server), named (the DNS server external-dns writes to) and
# prometheus (scraping the lab's operator and agents).
for service in etcd named prometheus; do
  if command -v systemctl >/dev/null && systemctl is-active -q "$service" 2>/dev/null; then
    systemctl disable --now "$service" >/dev/null 2>&1 || true
  fi
done

# --- CRIU >= 4.2, and runc's CRIU options ------------------------------------------
$host_checks || export BERTH_CRIU_CHECK=0
bash "$repo_root/hack/install-criu.sh"

# --- Go, for the Kubernetes programs below ---------------------------------------------
go=$(bash "$repo_root/hack/install-go.sh")

# --- Python environment ------------------------------------------------------------
python=""
for candidate in python3.11 python3.12 python3.13 python3; do
  if command -v "$candidate" >/dev/null && "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
    python=$(command -v "$candidate"); break
  fi
done
[ -n "$python" ] || die "Python >= 3.11 not found (apt-get install python3 on Debian 12/13)"
[ -x "$venv/bin/python" ] || { say "creating $venv"; "$python" -m venv "$venv"; }
stamp="$venv/.berth-installed"
want=$(sha256sum "$repo_root/pyproject.toml" | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  say "installing berth and its dependencies into $venv"
  pip_log="$venv/pip-install.log"
  { "$venv/bin/pip" install --upgrade pip && "$venv/bin/pip" install -e "$repo_root[dev]"; } \
    >"$pip_log" 2>&1 || { tail -n 20 "$pip_log" >&2; die "pip install failed (log: $pip_log)"; }
  echo "$want" > "$stamp"
else
  say "python environment up to date"
fi

# --- kube-apiserver, kubectl and helm (cached; ~0.1 s when built) ---------------------
kube_bin=$(GO="$go" bash "$repo_root/hack/kube/build.sh")
# kubectl and helm on PATH, as a person uses them; a foreign file there is left alone.
for tool in kubectl helm; do
  link=/usr/local/bin/$tool
  if [ -L "$link" ] && [ "$(readlink "$link")" = "$kube_bin/$tool" ]; then
    :
  elif [ -e "$link" ] || [ -L "$link" ]; then
    say "warning: $link exists and is not berth's; berth uses $kube_bin/$tool"
  else
    ln -s "$kube_bin/$tool" "$link"
    say "linked $link -> $kube_bin/$tool"
  fi
done

if ! $host_checks; then
  "$venv/bin/python" -c 'import berth_agent, berth_lab, berth_operator, kubectl_berth' \
    || die "berth is not importable from $venv"
  say "installed; host checks skipped (--no-host-checks)"
  exit 0
fi

# --- Checks: each piece must really work on this kernel ----------------------------
check_dir=$(mktemp -d /tmp/berth-install-check.XXXXXX)
dockerd_pid=""
loopdev=""
cleanup() {
  set +e
  if [ -n "$dockerd_pid" ]; then kill "$dockerd_pid" 2>/dev/null; wait "$dockerd_pid" 2>/dev/null; fi
  mountpoint -q "$check_dir/mnt" 2>/dev/null && umount "$check_dir/mnt"
  [ -n "$loopdev" ] && losetup -d "$loopdev" 2>/dev/null
  ip netns del berth-install-check 2>/dev/null
  rm -rf "$check_dir"
  return 0
}
trap cleanup EXIT

criu check >/dev/null 2>&1 || die "criu check failed: $(criu check 2>&1 | tail -n 3)"
say "ok: $(criu --version | head -n1), criu check passed"

truncate -s 256M "$check_dir/img"
mkfs.btrfs -q "$check_dir/img" >/dev/null || die "mkfs.btrfs failed (apt-get install btrfs-progs)"
loopdev=$(losetup --find --show "$check_dir/img") || die "no loop device (modprobe loop)"
mkdir "$check_dir/mnt"
mount -t btrfs "$loopdev" "$check_dir/mnt" || die "cannot mount btrfs (modprobe btrfs)"
head -c 1M /dev/urandom > "$check_dir/mnt/a"
cp --reflink=always "$check_dir/mnt/a" "$check_dir/mnt/b" || die "btrfs reflink copy failed"
umount "$check_dir/mnt"; losetup -d "$loopdev"; loopdev=""
say "ok: btrfs on a loop device, reflinks"

ip netns add berth-install-check || die "cannot create network namespaces"
ip netns del berth-install-check
say "ok: network namespaces"

/usr/sbin/dockerd --data-root "$check_dir/docker" --exec-root "$check_dir/exec" \
  --pidfile "$check_dir/dockerd.pid" -H "unix://$check_dir/docker.sock" \
  --bridge=none --iptables=false --experimental >"$check_dir/dockerd.log" 2>&1 &
dockerd_pid=$!
for _ in $(seq 100); do
  /usr/bin/docker -H "unix://$check_dir/docker.sock" version >/dev/null 2>&1 && break
  kill -0 "$dockerd_pid" 2>/dev/null || die "dockerd exited: $(tail -n 5 "$check_dir/dockerd.log")"
  sleep 0.1
done
/usr/bin/docker -H "unix://$check_dir/docker.sock" version --format '{{.Server.Version}}' >/dev/null 2>&1 \
  || die "dockerd did not answer: $(tail -n 5 "$check_dir/dockerd.log")"
say "ok: dockerd $(/usr/bin/docker -H "unix://$check_dir/docker.sock" version --format '{{.Server.Version}}') starts"

"$venv/bin/python" -c 'import berth_agent, berth_lab, berth_operator, kubectl_berth' \
  || die "berth is not importable from $venv"
say "ok: berth installed in $venv"
say "this machine is ready"
