"""The lab on real namespaces, veths, loop devices and btrfs."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from berth_common.process import output, run
from berth_lab import Lab, plan_lab
from berth_lab.host import LabError
from berth_lab.leftovers import Leftovers, find_leftovers

pytestmark = pytest.mark.lab
BERTH_LAB = [sys.executable, "-m", "berth_lab.cli"]


def leftovers(name: str) -> dict[str, list[str]]:
    """What is left of lab `name`: mounts, loops, netns, links, processes, state."""
    return find_leftovers(plan_lab(name)).as_dict()


NOTHING_LEFT = Leftovers().as_dict()


def test_hosts_have_own_address_and_reach_each_other(lab: Lab) -> None:
    a, b = lab.host("a"), lab.host("b")
    assert a.address != b.address
    eth0 = json.loads(a.run(["ip", "-j", "addr", "show", "eth0"]).stdout)
    assert eth0[0]["addr_info"][0]["local"] == a.address
    listener = subprocess.Popen(
        [*b.nsenter(), "busybox", "nc", "-l", "-p", "9100"], stdout=subprocess.PIPE
    )
    try:
        for _ in range(50):
            if (
                a.run(
                    ["busybox", "nc", "-w", "1", b.address, "9100"], check=False, input=b"beat\n"
                ).returncode
                == 0
            ):
                break
            time.sleep(0.1)
        out, _ = listener.communicate(timeout=5)
    finally:
        listener.kill()
    assert out == b"beat\n"


def test_each_host_sees_its_own_datastore_at_the_same_path(lab: Lab) -> None:
    a, b = lab.host("a"), lab.host("b")
    a.run(["sh", "-c", "echo from-a > /var/lib/berth/marker"])
    assert a.run(["cat", "/var/lib/berth/marker"]).stdout == b"from-a\n"
    assert b.run(["cat", "/var/lib/berth/marker"], check=False).returncode != 0
    fstype = a.run(["stat", "-f", "-c", "%T", "/var/lib/berth"]).stdout.decode().strip()
    assert fstype == "btrfs"
    a.run(["rm", "/var/lib/berth/marker"])
    # The host's private mounts are not visible outside it.
    assert "/var/lib/berth " not in Path("/proc/self/mounts").read_text()


def test_status_reports_hosts_addresses_and_datastores(lab: Lab) -> None:
    status = lab.status()
    assert [h["name"] for h in status["hosts"]] == ["host-a", "host-b"]
    assert all(h["up"] for h in status["hosts"])
    assert all(h["datastore"]["freeBytes"] > 20 * 2**30 for h in status["hosts"])


def test_second_up_of_the_same_lab_is_refused(lab: Lab) -> None:
    with pytest.raises(LabError, match="already up"):
        Lab(plan_lab("t", hosts=2)).up()


def test_cli_up_status_exec_down_leaves_nothing() -> None:
    name = "tcli"
    base = [*BERTH_LAB, "--name", name]
    try:
        run(
            [*base, "up", "--hosts", "3", "--bandwidth", "500mbit", "--datastore-size", "1G"],
            timeout=120,
        )
        status = json.loads(output([*base, "status", "-o", "json"]))
        assert len(status["hosts"]) == 3
        assert len({h["address"] for h in status["hosts"]}) == 3
        qdisc = output(["tc", "qdisc", "show", "dev", f"bl-{name}-a"])
        assert "tbf" in qdisc and "500Mbit" in qdisc
        hostname = output([*base, "exec", "host-c", "--", "ip", "-o", "-4", "addr", "show", "eth0"])
        assert status["hosts"][2]["address"] in hostname
        # As the README has it, from a shell whose PATH lacks the venv's bin dir.
        bare = {**os.environ, "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}
        listed = subprocess.run(
            [*base, "exec", "host-a", "--", "berth-agent", "repo", "list", "-o", "json"],
            capture_output=True, text=True, env=bare, timeout=60,
        )  # fmt: skip
        assert listed.returncode == 0, listed.stderr
        assert json.loads(listed.stdout) == []
        bad = run([*base, "exec", "host-q", "--", "true"], check=False)
        assert bad.returncode == 1 and b"no host 'host-q'" in bad.stderr
    finally:
        run([*base, "down"], timeout=120)
    assert leftovers(name) == NOTHING_LEFT


def test_down_cleans_up_after_a_run_killed_midway() -> None:
    name = "tcrash"
    base = [*BERTH_LAB, "--name", name]
    proc = subprocess.Popen(
        [*base, "up", "--hosts", "3", "--datastore-size", "1G"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        # Kill it as soon as the second host exists: host a is complete, b is half made.
        deadline = time.monotonic() + 60
        while f"berth-{name}-b" not in output(["ip", "netns", "list"]):
            assert time.monotonic() < deadline, "lab up never reached host b"
            assert proc.poll() is None, "lab up ended before it could be killed"
            time.sleep(0.005)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        assert leftovers(name)["netns"], "the killed run should have left something to clean"
    finally:
        run([*base, "down"], timeout=120)
    assert leftovers(name) == NOTHING_LEFT


def test_bad_input_changes_nothing() -> None:
    for args in (["up", "--hosts", "0"], ["up", "--bandwidth", "fast"]):
        proc = run([*BERTH_LAB, "--name", "tbad", *args], check=False)
        assert proc.returncode == 1 and proc.stderr
    assert leftovers("tbad") == NOTHING_LEFT
    missing = run([*BERTH_LAB, "--name", "tbad", "status"], check=False)
    assert missing.returncode == 1 and b"is not up" in missing.stderr
