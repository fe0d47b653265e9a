"""kubectl against the server as a user would use it: apply --server-side, patch,
edit, get -w and wait --for=condition=Ready."""

from __future__ import annotations

import json
import queue
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from berth_lab.kubeconfig import Kubectl, KubectlError, ensure_crds, load_manifests

pytestmark = pytest.mark.apiserver
HERE = Path(__file__).resolve().parent
WATCH_TIMEOUT = 20.0


@pytest.fixture(scope="module")
def widgets(kubectl: Kubectl) -> Iterator[None]:
    created = ensure_crds(kubectl, load_manifests(HERE / "widgets-crd.yaml"))
    yield
    for name in created:
        kubectl("delete", "crd", name, "--wait=false", check=False)


def widget(name: str, namespace: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "test.berth.dev/v1",
        "kind": "Widget",
        "metadata": {"name": name, "namespace": namespace},
        "spec": spec,
    }


def lines_of(proc: subprocess.Popen[str]) -> queue.Queue[str]:
    """Lines of a running kubectl's stdout, as they come, without blocking the test."""
    lines: queue.Queue[str] = queue.Queue()

    def pump() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.put(line.rstrip("\n"))

    threading.Thread(target=pump, daemon=True).start()
    return lines


def stop(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        proc.kill()
    proc.wait(timeout=10)


def test_apply_server_side_owns_fields_and_reports_conflicts(
    kubectl: Kubectl, widgets: None, namespace: str
) -> None:
    kubectl.apply(widget("ssa", namespace, size=2, color="red"), "--server-side")
    kubectl.apply(widget("ssa", namespace, size=4, color="red"), "--server-side")
    got = kubectl.json("get", "widget", "ssa", "-n", namespace, "--show-managed-fields")
    assert got["spec"] == {"size": 4, "color": "red"}
    managers = {m["manager"]: m["operation"] for m in got["metadata"]["managedFields"]}
    assert managers == {"kubectl": "Apply"}
    # Another field manager claiming spec.size conflicts until it forces.
    other = ("--server-side", "--field-manager=someone-else")
    with pytest.raises(KubectlError, match=r'conflict with "kubectl"'):
        kubectl.apply(widget("ssa", namespace, size=5), *other)
    kubectl.apply(widget("ssa", namespace, size=5), *other, "--force-conflicts")
    assert kubectl.json("get", "widget", "ssa", "-n", namespace)["spec"]["size"] == 5


def test_get_watch_sees_a_patch(kubectl: Kubectl, widgets: None, namespace: str) -> None:
    kubectl.apply(widget("watched", namespace, size=1))
    watch = kubectl.popen(
        "get", "widget", "watched", "-n", namespace, "-w", "-o", "jsonpath={.spec.size}{'\\n'}"
    )
    try:
        lines = lines_of(watch)
        assert lines.get(timeout=WATCH_TIMEOUT) == "1"  # the current state comes first
        kubectl(
            "patch",
            "widget",
            "watched",
            "-n",
            namespace,
            "--type=merge",
            "-p",
            '{"spec":{"size":7}}',
        )
        assert lines.get(timeout=WATCH_TIMEOUT) == "7"
        assert watch.poll() is None, "a watch keeps running until stopped"
    finally:
        stop(watch)


def test_edit_with_an_editor(kubectl: Kubectl, widgets: None, namespace: str) -> None:
    kubectl.apply(widget("edited", namespace, size=3, color="blue"))
    # kubectl runs $KUBE_EDITOR on a temporary file holding the object, as for a person.
    out = kubectl(
        "edit",
        "widget",
        "edited",
        "-n",
        namespace,
        env={"KUBE_EDITOR": "sed -i s/color:.blue/color:\\ green/"},
    ).stdout
    assert "edited" in out
    assert kubectl.json("get", "widget", "edited", "-n", namespace)["spec"]["color"] == "green"


def test_wait_for_ready_condition(kubectl: Kubectl, widgets: None, namespace: str) -> None:
    kubectl.apply(widget("waited", namespace, size=1))
    wait = kubectl.popen(
        "wait", "--for=condition=Ready", "widget/waited", "-n", namespace, "--timeout=60s"
    )
    try:
        with pytest.raises(subprocess.TimeoutExpired):
            wait.wait(timeout=1)  # nothing is Ready yet: kubectl must still be waiting
        ready = {
            "status": {
                "conditions": [
                    {
                        "type": "Ready",
                        "status": "True",
                        "reason": "Reconciled",
                        "lastTransitionTime": "2026-01-01T00:00:00Z",
                    }
                ]
            }
        }
        kubectl(
            "patch",
            "widget",
            "waited",
            "-n",
            namespace,
            "--subresource=status",
            "--type=merge",
            "-p",
            json.dumps(ready),
        )
        out, err = wait.communicate(timeout=WATCH_TIMEOUT)
        assert wait.returncode == 0, err
        assert out.strip() == "widget.test.berth.dev/waited condition met"
    finally:
        stop(wait)
    table = kubectl("get", "widget", "waited", "-n", namespace).stdout
    assert table.splitlines()[1].split()[:3] == ["waited", "1", "True"]
