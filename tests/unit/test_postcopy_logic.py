"""Post-copy's pure pieces and its small shell parts: which containers' memory follows
after the freeze, the runc that dockerd runs (with a recording stand-in for the real
runc: this layer checks only how it rewrites a restore), and the shell that records how
a page server or fetch ended."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest

from berth_agent.apps import memory
from berth_agent.checkpoint import runc_shim
from berth_agent.checkpoint.memory import (
    AUTO_POSTCOPY_BYTES,
    moves_after_freeze,
    resident_anon_bytes,
)
from berth_agent.checkpoint.postcopy import (
    LAZY_MARKER,
    PageCounts,
    _in_recording_shell,
    page_counts,
    read_status,
)
from berth_common.agent_api.models import MemoryMode, PostCopyProgress
from berth_operator.migration.driver import address_of

pytestmark = pytest.mark.unit
MIB = 1024 * 1024


@pytest.mark.parametrize(
    ("mode", "resident", "after"),
    [
        (MemoryMode.FREEZE, 8 * 1024 * MIB, False),
        (MemoryMode.POSTCOPY, 1 * MIB, True),
        (MemoryMode.AUTO, AUTO_POSTCOPY_BYTES + 1, True),
        (MemoryMode.AUTO, AUTO_POSTCOPY_BYTES, False),
        (MemoryMode.AUTO, None, False),  # unknown: the memory stays inside the freeze
    ],
)
def test_which_memory_follows_after_the_freeze(
    mode: MemoryMode, resident: int | None, after: bool
) -> None:
    assert moves_after_freeze(mode, resident) is after


def test_resident_memory_counts_children_and_a_missing_process_is_unknown() -> None:
    child = subprocess.Popen(["python3", "-c", "x = b'1' * (32 << 20); input()"],
                             stdin=subprocess.PIPE)  # fmt: skip
    try:
        deadline = time.monotonic() + 10
        while (resident_anon_bytes(child.pid) or 0) < 32 * MIB and time.monotonic() < deadline:
            time.sleep(0.05)
        alone = resident_anon_bytes(child.pid) or 0
        assert alone >= 32 * MIB
        with_children = resident_anon_bytes(os.getpid())
        assert with_children is not None and with_children >= alone
    finally:
        child.kill()
        child.wait()
    assert resident_anon_bytes(child.pid) is None


@pytest.fixture
def shim(tmp_path: Path) -> Path:
    """runc_shim's script, calling a stand-in that prints its arguments."""
    real = tmp_path / "runc.real"
    real.write_text('#!/bin/sh\nfor a in "$@"; do printf "%s\\n" "$a"; done\n')
    real.chmod(0o755)
    script = tmp_path / "runc"
    script.write_text(runc_shim.SCRIPT.replace("real=/usr/sbin/runc", f"real={real}"))
    script.chmod(0o755)
    return script


def args_seen(shim: Path, *argv: str) -> list[str]:
    return subprocess.run([shim, *argv], capture_output=True, text=True, check=True).stdout.split(
        "\n"
    )[:-1]


def test_the_shim_passes_every_call_through_unchanged(shim: Path, tmp_path: Path) -> None:
    images = tmp_path / "ckpt"
    images.mkdir()
    restore = ["--root", "/r", "restore", "--image-path", str(images), "--work-path", "/w", "id"]
    assert args_seen(shim, *restore) == restore
    assert args_seen(shim, "--root", "/r", "state", "id") == ["--root", "/r", "state", "id"]


def test_the_shim_restores_a_marked_checkpoint_with_lazy_pages(shim: Path, tmp_path: Path) -> None:
    images = tmp_path / "ckpt"
    images.mkdir()
    (images / LAZY_MARKER).write_text("/run/fetch dir")
    seen = args_seen(
        shim, "--root", "/r", "restore", "-d", "--image-path", str(images), "--work-path",
        "/w", "id",
    )  # fmt: skip
    assert seen == ["--root", "/r", "restore", "--lazy-pages", "--work-path", "/run/fetch dir",
                    "-d", "--image-path", str(images), "id"]  # fmt: skip
    seen = args_seen(shim, "restore", f"--image-path={images}", "--work-path=/w", "id")
    assert seen == ["restore", "--lazy-pages", "--work-path", "/run/fetch dir",
                    f"--image-path={images}", "id"]  # fmt: skip


def test_the_shim_opens_a_restores_images_to_a_user_namespace_only(
    shim: Path, tmp_path: Path
) -> None:
    images = tmp_path / "ckpt"
    (images / "sub").mkdir(parents=True)
    (images / "sub" / "pages-1.img").write_text("")
    images.chmod(0o700)
    argv = ["restore", "--image-path", str(images), "id"]
    assert args_seen(shim, *argv) == argv
    assert images.stat().st_mode & 0o777 == 0o700
    seen = subprocess.run(
        [shim, *argv], capture_output=True, text=True, check=True,
        env={**os.environ, runc_shim.USERNS_VARIABLE: "1"},
    ).stdout.split()  # fmt: skip
    assert seen == argv
    assert images.stat().st_mode & 0o777 == 0o755
    assert (images / "sub" / "pages-1.img").stat().st_mode & 0o044 == 0o044


def test_the_recording_shell_says_done_failed_or_killed(tmp_path: Path) -> None:
    for name, argv, progress in [
        ("ok", ["true"], PostCopyProgress.DONE),
        ("bad", ["sh", "-c", "echo 'Error (criu/uffd.c:1): broken' > lazy.log; exit 3"],
         PostCopyProgress.FAILED),
    ]:  # fmt: skip
        work = tmp_path / name
        work.mkdir()
        subprocess.run(_in_recording_shell(argv, work), cwd=work, check=True)
        status = read_status(name, work, "lazy.log")
        assert status.progress == progress, status
    assert "exit 3" in (read_status("bad", tmp_path / "bad", "lazy.log").error or "")
    assert "broken" in (read_status("bad", tmp_path / "bad", "lazy.log").error or "")

    ran = tmp_path / "ran-on-failure"
    work = tmp_path / "killed"
    work.mkdir()
    shell = subprocess.Popen(
        _in_recording_shell(["sleep", "30"], work, on_failure=["touch", str(ran)])
    )
    deadline = time.monotonic() + 5
    while not (work / "pid").exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert read_status("killed", work, "x.log").progress == PostCopyProgress.RUNNING
    children = Path(f"/proc/{shell.pid}/task/{shell.pid}/children").read_text().split()
    os.kill(int(children[0]), 9)  # the work dies; its shell runs on_failure and records it
    shell.wait(5)
    assert ran.exists()
    assert read_status("killed", work, "x.log").progress == PostCopyProgress.FAILED


def test_the_page_server_address_comes_from_the_agent_endpoint() -> None:
    assert address_of("https://10.1.2.3:7443") == "10.1.2.3"
    assert address_of("https://localhost:7443") == "127.0.0.1"


def test_the_memory_app_log_shows_a_restart_and_a_bad_checksum() -> None:
    good = ["2026-12-01T10:00:00Z memory 100 md5 abc", "2026-12-01T10:00:01Z ok 1",
            "2026-12-01T10:00:02Z ok 2"]  # fmt: skip
    assert memory.problems(good) == []
    bad = [*good, "2026-12-01T10:00:03Z CORRUPT 3 def"]
    assert memory.problems(bad) == ["CORRUPT 3 def"]
    restarted = [*good, "2026-12-01T10:00:03Z memory 100 md5 abc", "2026-12-01T10:00:04Z ok 1"]
    assert any("fills" in p for p in memory.problems(restarted))


def test_page_counts_come_from_the_fetchs_debug_log() -> None:
    # As `criu lazy-pages -v4` wrote it here (one fetch, three processes restored).
    log = """(00.000205) Version: 4.2.1 (gitid 0)
(00.911002) uffd: 9-11: #PF at 0x7f3a2c001000
(00.911102) uffd: 9-11: #PF at 0x7f3a2c002000
(00.920421) uffd: 1-14: UFFD transferred pages: (10/10)
(00.931000) uffd: 9-11: #PF at 0x55e0c0a3f000
(00.981481) uffd: 38--12: UFFD transferred pages: (8/8)
(15.499810) uffd: 9-11: UFFD transferred pages: (263756/263756)
(15.499900) uffd: 9-11: #PF at 0x7f3a2c002000 uffd_seek_pages failed
"""
    assert page_counts(log) == PageCounts(placed=263774, faulted=3)
    assert page_counts("") == PageCounts(placed=0, faulted=0)
