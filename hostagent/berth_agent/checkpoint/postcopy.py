"""Post-copy: a container's memory moves after the freeze, through CRIU's lazy pages.

Source (`LazyDump`): `runc checkpoint --lazy-pages --page-server ADDR:PORT` writes every
image but the memory pages and says so on its status fd; the container's processes then
stay frozen while CRIU serves their pages, and die once the target holds every page. If
the target stops asking first (it died, the link broke), CRIU's dump fails and resumes
the processes where they were: the source takes the application back, memory and all.

Target (`PageFetch`): `criu lazy-pages` connects to that page server and hands the
restored processes each page as they fault on it, fetching the rest in the background;
`runc restore --lazy-pages` (docker's own restore, through `runc_shim`) hands it their
memory. Should the fetch fail, the restored container is killed at once: a process whose
page handler is gone reads zeros where its memory was.

Both ends run in a small shell that records the exit code next to their logs, so the
outcome survives a restart of the agent that started them. The page server speaks TLS
with the agents' certificates: the pages are the application's memory.
"""

from __future__ import annotations

import contextlib
import os
import re
import select
import shlex
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from berth_agent.checkpoint.criu import CRIU_DIR, environment_with_criu, log_excerpt
from berth_agent.config import TLSConfig
from berth_agent.errors import Refusal
from berth_common.agent_api.models import PageServer, PostCopyProgress, PostCopyStatus
from berth_common.process import alive

ABORT_GRACE = 5.0  # seconds a failing lazy dump gets to resume its processes itself
READY_TIMEOUT = 60.0  # seconds for a lazy dump to write its images (no memory among them)
EXIT = "exit"  # the exit code of the dump or the fetch, written by its shell
PID = "pid"
SERVER = "server.json"  # a fetch's page server
# CRIU's page pipes are 4 MiB; without CAP_SYS_RESOURCE the kernel caps a pipe at
# fs.pipe-max-size (1 MiB by default) and every lazy transfer breaks.
PIPE_MAX_SIZE = 4 * 1024 * 1024
PIPE_MAX_SIZE_FILE = Path("/proc/sys/fs/pipe-max-size")
# Written into a checkpoint whose memory comes from a page fetch: the folder that holds
# the fetch's socket. runc_shim reads it from the copy docker's restore hands runc.
LAZY_MARKER = "berth-lazy-pages"


def raise_pipe_max_size() -> None:
    """CRIU's lazy transfer needs 4 MiB pipes (see PIPE_MAX_SIZE); raised once per host."""
    try:
        if int(PIPE_MAX_SIZE_FILE.read_text()) >= PIPE_MAX_SIZE:
            return
        PIPE_MAX_SIZE_FILE.write_text(str(PIPE_MAX_SIZE))
    except OSError as err:
        raise Refusal(
            f"post-copy needs fs.pipe-max-size >= {PIPE_MAX_SIZE} and it could not be raised: {err}"
        ) from err


def free_port(address: str) -> int:
    """A TCP port free on address now (CRIU binds it a moment later)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((address, 0))
        return int(probe.getsockname()[1])


def tls_options(tls: TLSConfig) -> list[str]:
    return ["--tls", "--tls-cacert", str(tls.client_ca), "--tls-cert", str(tls.cert),
            "--tls-key", str(tls.key)]  # fmt: skip


def write_tls_config(path: Path, tls: TLSConfig) -> Path:
    """The TLS options as a CRIU configuration file, for the dump runc runs (runc has no
    flags for them; CRIU reads the file CRIU_CONFIG_FILE names, in RPC mode too)."""
    path.write_text(f"tls\ntls-cacert {tls.client_ca}\ntls-cert {tls.cert}\ntls-key {tls.key}\n")
    return path


def _in_recording_shell(
    argv: list[str], work_dir: Path, on_failure: list[str] | None = None
) -> list[str]:
    """argv run by a shell that records its own pid, then argv's exit code in
    work_dir/exit (running on_failure first when that code is not 0)."""
    pid, done = shlex.quote(str(work_dir / PID)), shlex.quote(str(work_dir / EXIT))
    script = f"echo $$ > {pid}; {shlex.join(argv)}; rc=$?; "
    if on_failure:
        script += f'[ "$rc" = 0 ] || {shlex.join(on_failure)} >/dev/null 2>&1; '
    script += f"echo $rc > {done}.tmp && mv {done}.tmp {done}"
    return ["/bin/sh", "-c", script]


def read_status(container: str, work_dir: Path, log_name: str) -> PostCopyStatus:
    """What the shell recorded in work_dir: ended (and how), or still running."""
    started = _mtime(work_dir / PID)
    exit_file = work_dir / EXIT
    if exit_file.exists():
        code = exit_file.read_text().strip()
        seconds = _mtime(exit_file) - started if started else None
        if code == "0":
            return PostCopyStatus(
                container=container, progress=PostCopyProgress.DONE, seconds=seconds
            )
        return PostCopyStatus(
            container=container,
            progress=PostCopyProgress.FAILED,
            seconds=seconds,
            error=f"exit {code}{log_excerpt(work_dir / log_name)}",
        )
    if _shell_alive(work_dir):
        return PostCopyStatus(container=container, progress=PostCopyProgress.RUNNING)
    return PostCopyStatus(
        container=container,
        progress=PostCopyProgress.FAILED,
        error=f"ended without an exit code (killed){log_excerpt(work_dir / log_name)}",
    )


def bytes_received(server: PageServer) -> int | None:
    """What this host's connections to server have received (`ss`); None if unknown."""
    try:
        listed = subprocess.run(
            ["ss", "-tinH", "dst", server.address, "dport", "=", f":{server.port}"],
            capture_output=True,
            text=True,
            check=True,
            timeout=5,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    return sum(int(n) for n in re.findall(r"bytes_received:(\d+)", listed))


def fetch_status(container: str, work_dir: Path) -> PostCopyStatus:
    """A page fetch's status: the bytes it has received while it runs, its page counts
    once it has ended."""
    status = read_status(container, work_dir, PageFetch.LOG)
    if status.progress != PostCopyProgress.RUNNING:
        with contextlib.suppress(OSError):
            counts = page_counts((work_dir / PageFetch.LOG).read_text(errors="replace"))
            status.pages, status.faulted_pages = counts.placed, counts.faulted
        return status
    server_file = work_dir / SERVER
    if server_file.exists():
        received = bytes_received(PageServer.model_validate_json(server_file.read_text()))
        status.bytes_received = received
    return status


@dataclass(frozen=True)
class PageCounts:
    placed: int  # pages the fetch put into the restored processes
    faulted: int  # faults on a page not there yet: each one a process waited for


# What `criu lazy-pages -v4` logs: a line per fault it handles, and per process at the
# end "UFFD transferred pages: (copied/total)".
_FAULT = re.compile(r"#PF at 0x[0-9a-f]+$", re.MULTILINE)
_PLACED = re.compile(r"UFFD transferred pages: \((\d+)/\d+\)")


def page_counts(log_text: str) -> PageCounts:
    """The page counts in a page fetch's debug log."""
    return PageCounts(
        placed=sum(int(n) for n in _PLACED.findall(log_text)),
        faulted=len(_FAULT.findall(log_text)),
    )


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0


def _shell_alive(work_dir: Path) -> bool:
    try:
        return alive(int((work_dir / PID).read_text().strip()))
    except (OSError, ValueError):
        return False


@dataclass(frozen=True)
class LazyDump:
    """The source end: a container frozen, its images written, its pages being served."""

    container: str
    work_dir: Path  # on the host, not in the repository: CRIU writes here until the end
    server: PageServer
    LOG = "dump.log"

    @property
    def image_dir(self) -> Path:
        return self.work_dir / "images"

    @classmethod
    def start(
        cls,
        *,
        runc: str,
        runc_root: Path,
        container: str,
        container_id: str,
        work_dir: Path,
        address: str,
        tls: TLSConfig,
    ) -> LazyDump:
        """Freeze the container and dump all but its memory; return once the page server
        listens (the images are then complete)."""
        raise_pipe_max_size()
        shutil.rmtree(work_dir, ignore_errors=True)
        work_dir.mkdir(parents=True)
        dump = cls(container, work_dir, PageServer(address=address, port=free_port(address)))
        dump.image_dir.mkdir()
        config = write_tls_config(work_dir / "criu.conf", tls)
        read_end, write_end = os.pipe()
        argv = [
            runc,
            "--root",
            str(runc_root),
            "checkpoint",
            "--lazy-pages",
            "--page-server",
            f"{address}:{dump.server.port}",
            "--status-fd",
            str(write_end),
            "--image-path",
            str(dump.image_dir),
            "--work-path",
            str(work_dir),
            container_id,
        ]
        try:
            with (work_dir / "runc.out").open("wb") as out:
                subprocess.Popen(
                    _in_recording_shell(argv, work_dir),
                    env={**environment_with_criu(), "CRIU_CONFIG_FILE": str(config)},
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    pass_fds=(write_end,),
                    start_new_session=True,  # outlives an agent restart; the shell records it
                )
        finally:
            os.close(write_end)
        try:
            ready, _, _ = select.select([read_end], [], [], READY_TIMEOUT)
            byte = os.read(read_end, 1) if ready else b""
        finally:
            os.close(read_end)  # one byte only: CRIU keeps the fd, a reader of EOF would hang
        if byte == b"":
            _wait_for_exit(work_dir, 5.0)
            raise Refusal(
                f"lazy checkpoint of {container} failed: "
                f"{(work_dir / 'runc.out').read_text(errors='replace').strip()[-300:]}"
                f"{log_excerpt(work_dir / cls.LOG)}"
            )
        return dump


def abort_dump(work_dir: Path, resume_argv: list[str], grace: float = ABORT_GRACE) -> bool:
    """Stop a lazy dump still serving pages, and let its container run on here (the
    target, which would have needed them, no longer runs it). CRIU notices a target
    that closed the connection and resumes the processes itself (given `grace` seconds
    to finish doing so); one cut off silently would wait for TCP to give up, for many
    minutes. Killed, CRIU leaves them stopped in their freezer cgroup: resume_argv
    (`runc resume`) thaws them. True if it had to be killed."""
    deadline = time.monotonic() + grace
    while _shell_alive(work_dir) and time.monotonic() < deadline:
        time.sleep(0.05)
    if not _shell_alive(work_dir):
        return False
    pgid = int((work_dir / PID).read_text().strip())
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGKILL)  # the shell, runc and CRIU: one group
    subprocess.run(resume_argv, capture_output=True, check=False, timeout=30)
    return True


def stop_all(root: Path) -> list[str]:
    """Kill every dump or fetch still running under root (<run-dir>/<guid>/postcopy),
    with the shells that record them; the names of the containers they were for."""
    stopped = []
    for work_dir in root.glob("*/*"):
        if _shell_alive(work_dir):
            with contextlib.suppress(ProcessLookupError, ValueError):
                os.killpg(int((work_dir / PID).read_text().strip()), signal.SIGKILL)
            stopped.append(work_dir.name)
    return stopped


@dataclass(frozen=True)
class PageFetch:
    """The target end: the page fetch a restored container's memory comes from."""

    container: str
    work_dir: Path
    LOG = "lazy-pages.log"

    @classmethod
    def start(
        cls,
        *,
        container: str,
        image_dir: Path,
        work_dir: Path,
        server: PageServer,
        tls: TLSConfig,
        kill_on_failure: list[str],
    ) -> PageFetch:
        """Start fetching from server; return once the restore can hand it the memory.
        kill_on_failure runs if the fetch fails: the restored processes must not run on
        without their pages."""
        raise_pipe_max_size()
        shutil.rmtree(work_dir, ignore_errors=True)
        work_dir.mkdir(parents=True)
        (work_dir / SERVER).write_text(server.model_dump_json())
        argv = [
            str(Path(CRIU_DIR) / "criu"),
            "lazy-pages",
            "--page-server",
            "--address",
            server.address,
            "--port",
            str(server.port),
            "--images-dir",
            str(image_dir),
            "--work-dir",
            str(work_dir),
            "--log-file",
            cls.LOG,
            "-v4",  # a line per fault: how many pages a process had to wait for
            *tls_options(tls),
        ]
        with (work_dir / "criu.out").open("wb") as out:
            subprocess.Popen(
                _in_recording_shell(argv, work_dir, on_failure=kill_on_failure),
                env=environment_with_criu(),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        fetch = cls(container, work_dir)
        socket_path = work_dir / "lazy-pages.socket"
        deadline = time.monotonic() + READY_TIMEOUT
        while not socket_path.exists():
            if (work_dir / EXIT).exists() or time.monotonic() > deadline:
                raise Refusal(
                    f"page fetch for {container} did not start: "
                    f"{fetch.status().error or 'no socket'}"
                )
            time.sleep(0.002)
        (image_dir / LAZY_MARKER).write_text(str(work_dir))
        return fetch

    def status(self) -> PostCopyStatus:
        return fetch_status(self.container, self.work_dir)


def _wait_for_exit(work_dir: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not (work_dir / EXIT).exists() and time.monotonic() < deadline:
        time.sleep(0.01)
