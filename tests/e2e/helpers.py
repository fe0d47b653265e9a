"""Reading placements and pulse's heartbeat in end-to-end tests."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

from berth_agent.apps import pulse
from berth_lab import Lab, manifests
from berth_lab.kubeconfig import Kubectl


def placement(kubectl: Kubectl, namespace: str, name: str) -> dict[str, Any]:
    obj: dict[str, Any] = kubectl.json("get", "-n", namespace, f"rp/{name}", "-o", "json")
    return obj


def until(what: str, check: Callable[[], Any], timeout: float = 120, every: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


def create_pulse(
    kubectl: Kubectl,
    namespace: str,
    name: str,
    machine: str,
    interval: float = 0.2,
    port: int = pulse.PORT,
    **spec: Any,
) -> None:
    """A placement of pulse; each test's pulse publishes a host port of its own."""
    services = pulse.services(interval=interval, host_port=port)
    kubectl.apply(manifests.placement(name, namespace, machine, services, **spec))


def kubectl_berth(kubectl: Kubectl, *args: str) -> subprocess.CompletedProcess[str]:
    """`kubectl berth ARGS` as a person runs it, with kubectl's credentials."""
    return subprocess.run(
        [sys.executable, "-m", "kubectl_berth", *args],
        env=kubectl.env(), capture_output=True, text=True, timeout=600,
    )  # fmt: skip


def move(kubectl: Kubectl, namespace: str, name: str, machine: str) -> None:
    kubectl(
        "patch",
        "-n",
        namespace,
        f"rp/{name}",
        "--type",
        "merge",
        "-p",
        json.dumps({"spec": {"machine": machine}}),
    )


def beats(lab: Lab, host: str, repository: str) -> list[tuple[Any, int]]:
    with lab.agent(host) as agent:
        return pulse.beats(agent.logs(repository, "pulse", tail=5000))


def condition(obj: dict[str, Any], type_: str) -> dict[str, Any]:
    for c in obj.get("status", {}).get("conditions", []):
        if c["type"] == type_:
            return dict(c)
    return {}


def fill(lab: Lab, host: str, repository: str, mib: int) -> None:
    """Write mib MiB of random data into the repository on host, so moving it takes time."""
    with lab.agent(host) as agent:
        guid = next(r.guid for r in agent.repositories() if r.name == repository)
    lab.host(host).run(
        ["sh", "-c", f"head -c {mib}M /dev/urandom > /var/lib/berth/mounts/{guid}/data.bin && sync"]
    )


def wait_current(
    kubectl: Kubectl, namespace: str, name: str, timeout: float = 180
) -> dict[str, Any]:
    """Until status describes the current generation and Ready is True."""

    def settled() -> dict[str, Any] | None:
        obj = placement(kubectl, namespace, name)
        status = obj.get("status", {})
        if (
            status.get("observedGeneration") == obj["metadata"]["generation"]
            and condition(obj, "Ready").get("status") == "True"
        ):
            return obj
        return None

    try:
        result: dict[str, Any] = until(
            f"{name} to be Ready at its generation", settled, timeout, 0.2
        )
    except AssertionError as err:
        status = placement(kubectl, namespace, name).get("status", {})
        raise AssertionError(f"{err}; status: {json.dumps(status, indent=1)[:4000]}") from None
    return result
