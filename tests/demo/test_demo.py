"""The main job, as a user meets it: the installed `berth-lab demo`, run as it is.

The first test is the demo of the README (`--json FILE`): pulse's counter continues on
host-b, the downtime is in the placement's status, and the lab is gone afterwards. The
second keeps the lab (`--keep`, under a name of its own) and looks around it as the
demo's closing lines invite: what it leaves up must keep working after the demo ends.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from berth_lab.dns import resolve
from berth_lab.kubeconfig import Kubectl
from berth_lab.leftovers import find_leftovers
from berth_lab.manifests import placement
from berth_lab.plan import DEMO_LAB, plan_lab

pytestmark = pytest.mark.demo
BERTH_LAB = str(Path(sys.executable).parent / "berth-lab")
KEPT_LAB = "tkeep"


def run_demo(summary_file: Path, *, name: str | None = None, keep: bool = False) -> dict[str, Any]:
    """Run the demo as a user would; its --json summary. Its narration is printed (shown
    with -s, or when the test fails)."""
    argv = [BERTH_LAB, *(["--name", name] if name else []), "demo"]
    argv += [*(["--keep"] if keep else []), "--json", str(summary_file)]
    before = restore_copies()
    demo = subprocess.run(argv, capture_output=True, text=True, timeout=600, check=False)
    print(demo.stdout)
    assert demo.returncode == 0, f"berth-lab demo exited {demo.returncode}:\n{demo.stderr}"
    # Docker's restore keeps a copy of every checkpoint it restored (the app's memory) in
    # a temporary directory: the lab's hosts have their own, not the machine's /tmp.
    assert restore_copies() - before == set(), "the move left checkpoint copies in /tmp"
    summary: dict[str, Any] = json.loads(summary_file.read_text())
    return summary


def restore_copies() -> set[Path]:
    return set(Path("/tmp").glob("ctrd-checkpoint*"))


def assert_moved_with_its_memory(summary: dict[str, Any]) -> None:
    assert summary["counterContinued"] is True
    assert summary["counterAfter"] == summary["counterBefore"] + 1
    # The placement's status, as the operator wrote it.
    assert summary["currentMachine"] == "host-b"
    last = summary["migration"]  # status.lastMigration
    assert (last["from"], last["to"], last["result"]) == ("host-a", "host-b", "Succeeded")
    assert last["downtimeSeconds"] > 0
    assert summary["downtimeSeconds"] == last["downtimeSeconds"]
    # The cutover starts before the move ends (same format, so they compare as text).
    assert last["startedAt"] < last["cutoverAt"] < last["finishedAt"]
    # Both hosts as the Machines' status shows them (what `kubectl berth repos` prints).
    source, target = summary["heldAfter"]["host-a"], summary["heldAfter"]["host-b"]
    assert target["mounted"] and target["dockerRunning"] and not target.get("movedTo")
    assert not source["mounted"] and not source["dockerRunning"]
    assert source["movedTo"] == "host-b"  # kept as the base of a move back


def test_the_demo_moves_pulse_with_its_memory_and_leaves_nothing_behind(tmp_path: Path) -> None:
    summary = run_demo(tmp_path / "demo.json")
    assert_moved_with_its_memory(summary)
    left = find_leftovers(plan_lab(DEMO_LAB))
    assert not left, f"the demo left {left}"


def test_a_kept_demo_lab_serves_on_after_the_demo_ended(tmp_path: Path) -> None:
    base = [BERTH_LAB, "--name", KEPT_LAB]
    try:
        summary = run_demo(tmp_path / "demo.json", name=KEPT_LAB, keep=True)
        assert_moved_with_its_memory(summary)
        shown = subprocess.run(
            [*base, "status", "-o", "json"], capture_output=True, text=True, check=True
        )
        cluster = json.loads(shown.stdout)["cluster"]
        assert cluster["operator"]["running"] and cluster["dns"]["running"]
        # spec.dns's name still resolves, to where pulse went, after the demo ended.
        address, port = cluster["dns"]["address"].rsplit(":", 1)
        host_b = summary["endpointsAfter"][0]["address"]
        assert resolve("pulse.demo.lab", (address, int(port)), timeout=2)[0] == [host_b]
        # The operator serves every namespace, not only the demo's.
        kubectl = Kubectl(Path(cluster["kubeconfig"]))
        kubectl("create", "namespace", "elsewhere")
        kubectl.apply(placement("nowhere", "elsewhere", "host-z", []))
        kubectl(
            "wait", "-n", "elsewhere", "rp/nowhere", "--timeout=60s",
            "--for=jsonpath={.status.observedGeneration}=1", timeout=90,
        )  # fmt: skip
    finally:
        subprocess.run([*base, "down"], capture_output=True, check=False, timeout=180)
    left = find_leftovers(plan_lab(KEPT_LAB))
    assert not left, f"berth-lab down left {left}"
