"""hack/install-host.sh on bare Debian 12 and 13 root filesystems: no Go, no kubectl, no
CRIU before; Go, kubectl, CRIU, helm and berth's virtual environment after.

Runs the installer's package and toolchain steps (`--no-host-checks`: a chroot is not a
host, so no dockerd, loop device or `criu check` there) in a chroot of a fresh
debootstrap. The first run downloads and builds (see tests/install/debian_root.py for
what is cached); each run prints its time.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from install.debian_root import Suite, debian_root

pytestmark = pytest.mark.install

REPO_ROOT = Path(__file__).resolve().parents[2]
CHECKOUT = "/root/berth"
KUBE_VERSION = next(
    line.split()[-1]
    for line in (REPO_ROOT / "hack/kube/go.mod").read_text().splitlines()
    if line.startswith("require k8s.io/kubernetes ")
)
SUITES = [Suite("bookworm", "12"), Suite("trixie", "13")]


@pytest.mark.parametrize("suite", SUITES, ids=lambda s: f"debian{s.version}")
def test_installer_brings_every_tool_on_a_bare_debian(
    suite: Suite, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    started = time.monotonic()
    with debian_root(suite, REPO_ROOT, CHECKOUT) as root:
        bare = root.run("command -v go kubectl helm criu; test -d /opt/berth")
        assert bare.returncode != 0 and bare.stdout == "", (
            f"the base root filesystem is not bare: {bare.stdout}"
        )
        log = tmp_path / "install.log"
        install = root.run(
            f"bash {CHECKOUT}/hack/install-host.sh --no-host-checks", timeout=3600, log=log
        )
        assert install.returncode == 0, f"install-host.sh failed:\n{install.stdout[-6000:]}"

        expected = {
            "go version": "go1.",
            "kubectl version --client": f"Client Version: {KUBE_VERSION}",
            "criu --version": "Version: 4.",
            "helm version": 'Version:"v3.',
            "promtool --version": "promtool, version 2.",
            "git --version": "git version 2.",
            f"{CHECKOUT}/.venv/bin/berth-lab --help": "usage: berth-lab",
        }
        for command, text in expected.items():
            done = root.run(command)
            assert done.returncode == 0 and text in done.stdout, (
                f"`{command}` in Debian {suite.version}: rc={done.returncode}\n"
                f"{done.stdout}{done.stderr}"
            )
        # The toolchain is berth's own, not one a machine happened to carry.
        go = root.run("readlink -f $(command -v go); go version")
        assert "/opt/berth/go/" in go.stdout, go.stdout
        shown = [f"    $ {c}\n      {root.run(c).stdout.strip().splitlines()[0]}" for c in expected]
    with capsys.disabled():
        print(f"\n[install] Debian {suite.version} ({suite.codename}):", *shown, sep="\n")
        print(f"[install] bare root filesystem to every tool in {time.monotonic() - started:.0f} s")
