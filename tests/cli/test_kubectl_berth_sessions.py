"""kubectl berth logs / exec against the real API server, operator and lab agents: a
person's right checked by the API server (SubjectAccessReview), a certificate for the
one machine the repository runs on, refusals without rights, and `logs -f` across a move.

The people are ServiceAccounts (their tokens work on any cluster, BERTH_KUBECONFIG's
too), bound to the chart's session roles as an administrator would bind them.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from berth_agent.apps import pulse
from berth_lab import Lab
from berth_lab.cluster import RELEASE, LabCluster
from berth_lab.kubeconfig import Kubectl, service_account_kubeconfig
from e2e.helpers import create_pulse, placement, until

pytestmark = pytest.mark.cli
NAME = "sess-pulse"
CONTAINER = "pulse"


def berth(
    kubeconfig: Kubectl, *args: str, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "kubectl_berth", *args],
        env=kubeconfig.env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def running_on(kubectl: Kubectl, namespace: str) -> str:
    return str(placement(kubectl, namespace, NAME)["status"].get("currentMachine"))


def ready_on(kubectl: Kubectl, namespace: str, machine: str) -> bool:
    status = placement(kubectl, namespace, NAME).get("status", {})
    ready = any(
        c["type"] == "Ready" and c["status"] == "True" for c in status.get("conditions", [])
    )
    return ready and status.get("currentMachine") == machine


@pytest.fixture(scope="module")
def sess_pulse(cluster: LabCluster, kubectl: Kubectl, namespace: str) -> str:
    create_pulse(kubectl, namespace, NAME, "host-a", interval=0.2, port=8091)
    until(f"{NAME} Ready on host-a", lambda: ready_on(kubectl, namespace, "host-a"), 120)
    return NAME


def person(kubectl: Kubectl, namespace: str, name: str, roles: list[str], tmp: Path) -> Kubectl:
    """A ServiceAccount bound to the requester role (cluster-wide) and to roles in the
    test's namespace, and kubectl for it."""
    config = service_account_kubeconfig(kubectl, namespace, name, tmp / f"{name}.kubeconfig")
    subject = f"{namespace}:{name}"
    requester = f"--clusterrole={RELEASE}-session-requester"
    kubectl("create", "clusterrolebinding", f"{name}-{namespace}-requester", requester,
            f"--serviceaccount={subject}")  # fmt: skip
    for role in roles:
        kubectl("create", "rolebinding", f"{name}-{role}", "-n", namespace,
                f"--clusterrole={RELEASE}-{role}", f"--serviceaccount={subject}")  # fmt: skip
    return Kubectl(config, cache_dir=kubectl.cache_dir)


@pytest.fixture(scope="module")
def people(
    kubectl: Kubectl, namespace: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Kubectl]]:
    tmp = tmp_path_factory.mktemp("people")
    made = {
        "nobody": person(kubectl, namespace, "nobody", [], tmp),
        "reader": person(kubectl, namespace, "reader", ["repository-logs"], tmp),
        "operator": person(kubectl, namespace, "ops", ["repository-logs", "repository-exec"], tmp),
    }
    yield made
    for name in ("nobody", "reader", "ops"):
        kubectl("delete", "clusterrolebinding", f"{name}-{namespace}-requester", check=False)


def test_logs_and_exec_reach_the_repository_where_it_runs(
    kubectl: Kubectl, namespace: str, sess_pulse: str, people: dict[str, Kubectl], lab: Lab
) -> None:
    here = running_on(kubectl, namespace)
    logs = berth(people["reader"], "-n", namespace, "logs", sess_pulse, CONTAINER, "--tail", "5")
    assert logs.returncode == 0, logs.stderr
    lines = logs.stdout.splitlines()
    assert len(lines) == 5 and all("counter=" in line for line in lines), lines
    ps = berth(people["operator"], "-n", namespace, "exec", sess_pulse, "--", "docker", "ps",
               "--format", "{{.Names}} {{.State}}")  # fmt: skip
    assert ps.returncode == 0, ps.stderr
    assert f"{CONTAINER} running" in ps.stdout
    tail = berth(people["operator"], "-n", namespace, "exec", sess_pulse, "--",
                 "docker", "logs", CONTAINER, "--tail", "5")  # fmt: skip
    assert tail.returncode == 0 and len(tail.stdout.splitlines()) == 5, tail.stderr
    # The command's own exit code, and its error on stderr.
    missing = berth(people["operator"], "-n", namespace, "exec", sess_pulse, "--",
                    "docker", "inspect", "no-such-container")  # fmt: skip
    assert missing.returncode == 1 and "no-such-container" in missing.stderr
    # Every exec is in the agent's log with who ran what.
    log = (lab.host(here[-1]).plan.state_dir / "agent.log").read_text()
    audited = [json.loads(x) for x in log.splitlines() if '"berth.agent.sessions"' in x]
    ran = [a for a in audited if a.get("argv", [])[:2] == ["docker", "inspect"]]
    assert ran and ran[-1]["user"] == f"system:serviceaccount:{namespace}:ops", audited[-3:]


@pytest.mark.faults
@pytest.mark.parametrize(
    ("who", "args", "words"),
    [
        ("nobody", ["logs", NAME], 'cannot get resource "repositoryplacements/logs"'),
        ("reader", ["exec", NAME, "--", "docker", "ps"],
         'cannot create resource "repositoryplacements/exec"'),
        ("operator", ["exec", NAME, "--", "sh", "-c", "id"], "only docker commands"),
        ("operator", ["logs", "no-such-placement"], "not found"),
    ],
)  # fmt: skip
def test_without_the_right_a_session_is_refused(
    namespace: str, sess_pulse: str, people: dict[str, Kubectl], who: str, args: list[str],
    words: str,
) -> None:  # fmt: skip
    refused = berth(people[who], "-n", namespace, *args)
    assert refused.returncode == 1 and words in refused.stderr, refused.stderr
    print(f"\n$ kubectl berth {' '.join(args)}   # as {who}\n{refused.stderr.strip()}")


def test_logs_follow_the_repository_across_a_move(
    kubectl: Kubectl, namespace: str, sess_pulse: str, people: dict[str, Kubectl]
) -> None:
    here = running_on(kubectl, namespace)
    there = "host-b" if here == "host-a" else "host-a"
    follower = subprocess.Popen(
        [sys.executable, "-m", "kubectl_berth", "-n", namespace, "logs", sess_pulse,
         CONTAINER, "--tail", "3", "-f"],
        env=people["reader"].env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        time.sleep(3)  # following on `here`
        moved = berth(kubectl, "-n", namespace, "migrate", sess_pulse, "--to", there, "--wait")
        assert moved.returncode == 0, moved.stderr
        time.sleep(4)  # and lines from `there`
    finally:
        follower.send_signal(signal.SIGINT)
        out, err = follower.communicate(timeout=30)
    seen = pulse.counters(out.splitlines())
    assert f"now runs on {there}" in err, err
    assert len(seen) >= 20, out
    assert seen == sorted(set(seen)), "a line was printed twice or out of order"
    # The counter continued: no beat lost while the stream paused and resumed.
    assert seen == list(range(seen[0], seen[-1] + 1)), seen
    # exec, too, reaches it where it runs now.
    ps = berth(people["operator"], "-n", namespace, "exec", sess_pulse, "--", "docker", "ps",
               "--format", "{{.Names}} {{.State}}")  # fmt: skip
    assert ps.returncode == 0 and f"{CONTAINER} running" in ps.stdout, ps.stderr
    assert running_on(kubectl, namespace) == there
