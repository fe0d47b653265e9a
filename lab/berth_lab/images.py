"""berth's container images, built on this machine by a private dockerd.

No container registry is reachable and no system dockerd needs to run: `BuildDockerd`
starts Debian's dockerd with its own data root, exec root, pid file and socket, no bridge
and no iptables rules (builds run offline, `docker build --network=none`), and stops it
by its pid. Images stay in its data root between runs, so a second build is fast.

    with BuildDockerd() as dockerd:
        build_base(dockerd)                 # hack/image/base.sh: berth/base:bookworm
        tag = build_operator_image(dockerd)  # hack/image/build.sh: berth/operator:<version>
        dockerd.docker("run", "--rm", tag, "--help")

By hand: `hack/image/build.sh [--save FILE]` (it comes back here for the dockerd when
DOCKER_HOST is unset), or `python -m berth_lab.images build [--save FILE]`.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import IO

import httpx
import yaml

from berth_lab.procs import alive, with_descendants

log = logging.getLogger("berth.lab.images")

REPO_ROOT = Path(__file__).resolve().parents[2]
BASE_SCRIPT = REPO_ROOT / "hack" / "image" / "base.sh"
BUILD_SCRIPT = REPO_ROOT / "hack" / "image" / "build.sh"
CHART_YAML = REPO_ROOT / "charts" / "berth" / "Chart.yaml"
PYPROJECT = REPO_ROOT / "pyproject.toml"

BASE_IMAGE = "berth/base:bookworm"
OPERATOR_REPOSITORY = "berth/operator"
DATA_ROOT = Path("/var/lib/berth-build")
RUN_ROOT = Path("/run/berth-build")
READY_TIMEOUT = 60.0
STOP_TIMEOUT = 30.0


class ImageError(RuntimeError):
    """The build dockerd or an image build failed."""


def docker_client() -> str:
    """The docker CLI: $BERTH_DOCKER, else Debian's (it matches Debian's dockerd 20.10)."""
    chosen = os.environ.get("BERTH_DOCKER")
    if chosen:
        return chosen
    if os.access("/usr/bin/docker", os.X_OK):
        return "/usr/bin/docker"
    found = shutil.which("docker")
    if not found:
        raise ImageError("no docker client: apt-get install docker.io")
    return found


def dockerd_binary() -> str:
    chosen = os.environ.get("BERTH_DOCKERD") or shutil.which("dockerd")
    if chosen:
        return chosen
    if os.access("/usr/sbin/dockerd", os.X_OK):
        return "/usr/sbin/dockerd"
    raise ImageError("no dockerd: apt-get install docker.io")


def operator_version() -> str:
    """The image tag: the chart's appVersion, else the Python distribution's version."""
    with contextlib.suppress(OSError, yaml.YAMLError, AttributeError):
        app = yaml.safe_load(CHART_YAML.read_text()).get("appVersion")
        if app:
            return str(app)
    found = re.search(r'^version\s*=\s*"([^"]+)"', PYPROJECT.read_text(), re.MULTILINE)
    if not found:
        raise ImageError(f"no appVersion in {CHART_YAML} and no version in {PYPROJECT}")
    return found.group(1)


def operator_image() -> str:
    return f"{OPERATOR_REPOSITORY}:{operator_version()}"


def _mounts_under(*roots: Path) -> list[str]:
    """Mount points at or below roots, deepest first."""
    found: list[str] = []
    with open("/proc/self/mounts") as mounts:
        for line in mounts:
            # Octal escapes (\040 for a space) as the kernel writes them.
            point = line.split()[1].encode().decode("unicode_escape")
            if any(point == str(r) or point.startswith(f"{r}/") for r in roots):
                found.append(point)
    return sorted(found, key=len, reverse=True)


def _cmdline(pid: int) -> str:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return ""
    return raw.replace(b"\0", b" ").decode(errors="replace")


def _terminate(pid: int, timeout: float) -> None:
    """SIGTERM, then SIGKILL after timeout; by pid only."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    if alive(pid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)


class BuildDockerd:
    """A private dockerd for building and trying images; start()/stop() or a with block.

    One user at a time (a lock file under the run dir): a second one waits. The data
    root keeps images between runs; the exec root, pid file and socket live in the run
    dir. If the starting process dies, the kernel sends dockerd SIGTERM (its
    PR_SET_PDEATHSIG, tied to the starting thread), and dockerd stops its containers.
    """

    def __init__(
        self,
        data_root: Path = DATA_ROOT / "docker",
        run_dir: Path = RUN_ROOT,
        *,
        log_path: Path | None = None,
    ) -> None:
        self.data_root = data_root
        self.run_dir = run_dir
        self.log_path = log_path or data_root.parent / "dockerd.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self._lock: IO[str] | None = None

    # --- paths -----------------------------------------------------------------------
    @property
    def exec_root(self) -> Path:
        return self.run_dir / "exec"

    @property
    def pidfile(self) -> Path:
        return self.run_dir / "docker.pid"

    @property
    def socket(self) -> Path:
        return self.run_dir / "docker.sock"

    @property
    def docker_host(self) -> str:
        return f"unix://{self.socket}"

    def env(self) -> dict[str, str]:
        """The environment for docker clients of this daemon (legacy builder: 20.10)."""
        return {**os.environ, "DOCKER_HOST": self.docker_host, "DOCKER_BUILDKIT": "0"}

    # --- lifecycle ---------------------------------------------------------------------
    def start(self) -> BuildDockerd:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.data_root.mkdir(parents=True, exist_ok=True)
        self._acquire_lock()
        try:
            self._reap_orphan()
            self._spawn()
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def _acquire_lock(self) -> None:
        lock = open(self.run_dir / "lock", "a+")  # noqa: SIM115 - held until stop()
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.seek(0)
            holder = lock.read().strip() or "another process"
            log.warning("waiting for the build dockerd (in use by %s)", holder)
            fcntl.flock(lock, fcntl.LOCK_EX)
        lock.seek(0)
        lock.truncate()
        lock.write(f"pid {os.getpid()}\n")
        lock.flush()
        self._lock = lock

    def _reap_orphan(self) -> None:
        """A dockerd of an earlier run still on our pid file: we hold the lock, so its
        starter is gone. Stop it (by its pid, after checking it is ours)."""
        try:
            pid = int(self.pidfile.read_text())
        except (OSError, ValueError):
            pid = 0
        if pid and alive(pid):
            cmdline = _cmdline(pid)
            if "dockerd" in cmdline and str(self.data_root) in cmdline:
                log.warning("stopping an orphaned build dockerd", extra={"pid": pid})
                _terminate(pid, STOP_TIMEOUT)
        self._clean_leftovers()

    def _spawn(self) -> None:
        argv = [
            dockerd_binary(),
            f"--data-root={self.data_root}",
            f"--exec-root={self.exec_root}",
            f"--pidfile={self.pidfile}",
            f"--host={self.docker_host}",
            "--bridge=none",
            "--iptables=false",
            "--ip-masq=false",
            "--shutdown-timeout=10",
        ]
        setpriv = shutil.which("setpriv")
        if setpriv:
            argv = [setpriv, "--pdeathsig", "TERM", "--", *argv]
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "wb") as out:
            self.proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def _wait_ready(self) -> None:
        assert self.proc is not None
        started = time.monotonic()
        transport = httpx.HTTPTransport(uds=str(self.socket))
        with httpx.Client(transport=transport, base_url="http://docker", timeout=2) as http:
            while time.monotonic() - started < READY_TIMEOUT:
                if self.proc.poll() is not None:
                    raise ImageError(f"dockerd exited {self.proc.returncode}: {self.log_tail()}")
                with contextlib.suppress(httpx.TransportError):
                    if http.get("/_ping").status_code == 200:
                        log.info(
                            "build dockerd ready",
                            extra={
                                "docker_host": self.docker_host,
                                "seconds": round(time.monotonic() - started, 2),
                            },
                        )
                        return
                time.sleep(0.1)
        raise ImageError(f"dockerd not ready after {READY_TIMEOUT:.0f}s: {self.log_tail()}")

    def stop(self) -> None:
        """Stop dockerd by its pid (it stops its containers), then make sure nothing of it
        is left: no process on its exec root, no mount under its roots."""
        try:
            if self.proc is not None:
                if self.proc.poll() is None:
                    _terminate(self.proc.pid, STOP_TIMEOUT)
                    self.proc.wait(timeout=10)
                self.proc = None
            self._clean_leftovers()
        finally:
            if self._lock is not None:
                self._lock.close()  # releases the flock
                self._lock = None

    def _clean_leftovers(self) -> None:
        # containerd-shims outlive dockerd only if it was killed; they and their
        # containers are found by our exec root on their command lines.
        owned = set()
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            argv = _cmdline(int(entry.name))
            program = os.path.basename(argv.split(" ", 1)[0])
            if program.startswith(("containerd", "dockerd")) and str(self.exec_root) in argv:
                owned.add(int(entry.name))
        for pid in sorted(with_descendants(owned), reverse=True):
            log.warning("stopping a leftover of the build dockerd", extra={"pid": pid})
            _terminate(pid, 5)
        for point in _mounts_under(self.data_root, self.run_dir):
            log.warning("unmounting a leftover of the build dockerd", extra={"mount": point})
            subprocess.run(["umount", "-l", point], check=False, capture_output=True)
        self.pidfile.unlink(missing_ok=True)

    def log_tail(self, chars: int = 2000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return "(no log)"

    # --- the client ----------------------------------------------------------------------
    def docker(
        self, *args: str, check: bool = True, timeout: float = 600
    ) -> subprocess.CompletedProcess[str]:
        """The docker CLI against this daemon; raises ImageError with stderr on failure."""
        proc = subprocess.run(
            [docker_client(), *args],
            env=self.env(),
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if check and proc.returncode != 0:
            raise ImageError(f"docker {' '.join(args)} exited {proc.returncode}: {proc.stderr}")
        return proc

    def __enter__(self) -> BuildDockerd:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def _run_script(
    script: Path, args: Sequence[str], dockerd: BuildDockerd, log_path: Path | None
) -> None:
    out: IO[bytes] | None = None
    try:
        if log_path is not None:
            log_path.parent.mkdir(parents=True, exist_ok=True)
            out = open(log_path, "ab")  # noqa: SIM115 - closed below
        proc = subprocess.run(
            ["bash", str(script), *args],
            env=dockerd.env(),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT if out else None,
            check=False,
        )
    finally:
        if out is not None:
            out.close()
    if proc.returncode != 0:
        tail = ""
        if log_path is not None:
            tail = ":\n" + log_path.read_text(errors="replace")[-3000:]
        raise ImageError(f"{script.name} {' '.join(args)} exited {proc.returncode}{tail}")


def build_base(
    dockerd: BuildDockerd, *, rebuild: bool = False, log_path: Path | None = None
) -> str:
    """berth/base:bookworm in dockerd (hack/image/base.sh; the rootfs is cached)."""
    _run_script(BASE_SCRIPT, ["--rebuild"] if rebuild else [], dockerd, log_path)
    return BASE_IMAGE


def build_operator_image(
    dockerd: BuildDockerd, *, save: Path | None = None, log_path: Path | None = None
) -> str:
    """berth/operator:<version> in dockerd (hack/image/build.sh, which also makes sure the
    base is there); save: also `docker save` it to this tarball."""
    args = ["--save", str(save)] if save is not None else []
    _run_script(BUILD_SCRIPT, args, dockerd, log_path)
    # Earlier builds' images, untagged by this one, would pile up in the data root.
    dockerd.docker("image", "prune", "--force", check=False)
    return operator_image()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m berth_lab.images",
        description="Build berth's images with a private dockerd (stopped afterwards).",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    build = sub.add_parser("build", help="the base and the operator image")
    build.add_argument("--save", type=Path, help="docker save the operator image to this file")
    build.add_argument("--rebuild-base", action="store_true", help="debootstrap again")
    args = parser.parse_args(argv)
    try:
        with BuildDockerd() as dockerd:
            print(f"[images] build dockerd at {dockerd.docker_host}", file=sys.stderr)
            if args.rebuild_base:
                build_base(dockerd, rebuild=True)
            build_operator_image(dockerd, save=args.save)  # build.sh prints the image
    except ImageError as err:
        print(f"[images] ERROR: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
