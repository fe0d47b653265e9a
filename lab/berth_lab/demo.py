"""`berth-lab demo`: the main job on the embedded lab, narrated.

pulse runs on host-a; it moves with its memory to host-b; the counter keeps counting.
`--json FILE` writes a summary: `migration` and `currentMachine` are the placement's
status as the operator wrote it (`status.lastMigration`, `status.currentMachine`); the
counters and the heartbeat gap are read from pulse's own log on host-b.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from berth_agent.apps import pulse
from berth_lab.agents import agent_endpoint
from berth_lab.controlplane import LabControlPlane
from berth_lab.dns import resolve
from berth_lab.kube import KubeAPIServer
from berth_lab.kube_tools import kubectl_binary
from berth_lab.kubeconfig import Kubectl
from berth_lab.lab import Lab
from berth_lab.manifests import placement
from berth_lab.plan import DEMO_LAB, plan_lab

NAMESPACE = "demo"
REPO = "pulse"
BEAT = 0.25  # seconds between beats: fine enough to see the gap
HOSTNAME = "pulse.demo.lab"  # spec.dns: external-dns writes it into the lab's named


def say(text: str = "") -> None:
    print(text, flush=True)


def run_demo(name: str = DEMO_LAB, keep: bool = False, json_path: Path | None = None) -> int:
    say("berth demo: a running repository moves to another host with its processes' memory\n")
    Lab(plan_lab(name, hosts=3)).down()  # a previous run may have left it up
    say("1. the embedded lab: three hosts (network + mount namespaces, btrfs datastores, a")
    say("   berth-agent each), a real kube-apiserver, berth's CRDs and its operator, and")
    say("   external-dns writing the DNS records berth asks for into a BIND 9 (named)")
    started = time.monotonic()
    lab = Lab(plan_lab(name, hosts=3, datastore_size="10G")).up()
    try:
        plane = LabControlPlane(lab).up()
        plane.kubectl()("create", "namespace", NAMESPACE)
        for host in lab.hosts.values():
            say(f"   {host.name}  {host.address}  agent {agent_endpoint(host)}")
        say(
            f"   kube-apiserver {plane.server.url}; operator running; ready in "
            f"{time.monotonic() - started:.1f}s\n"
        )
        summary = _demo(lab, plane)
    except BaseException:
        say("\ndemo failed; tearing the lab down")
        lab.down()
        raise
    if json_path:
        json_path.write_text(json.dumps(summary, indent=2, default=str))
        say(f"\nsummary written to {json_path}")
    if keep:
        flag = f"--name {name} "
        say("\nThe lab is still up (hosts, API server, operator, DNS). Look around:")
        say(f"  export KUBECONFIG={plane.admin_kubeconfig}")
        say(f"  kubectl berth list -A; kubectl berth machines; berth-lab {flag}status")
        say(f"  kubectl berth migrate {REPO} -n {NAMESPACE} --to host-a --wait")
        say(f"  kubectl berth logs {REPO} -n {NAMESPACE} -f     # follows it across moves")
        say(f"  kubectl berth exec {REPO} -n {NAMESPACE} -- docker ps")
        say(f"Tear it down: berth-lab {flag}down")
    else:
        lab.down()  # the API server, operator and DNS server too
        say("\nlab torn down (run with --keep to explore it)")
    return 0 if summary["counterContinued"] else 1


def _cli_env(server: KubeAPIServer) -> dict[str, str]:
    """kubectl as the cluster's admin, finding the kubectl-berth plugin of this venv."""
    return {
        **os.environ,
        "KUBECONFIG": str(server.admin_kubeconfig),
        "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}",
    }


def _kubectl_berth(server: KubeAPIServer, *args: str) -> int:
    """The CLI exactly as a user runs it: `kubectl berth ...`, output straight through."""
    say(f"   $ kubectl berth {shlex.join(args)}")
    argv = [str(kubectl_binary()), "berth", *args]
    return subprocess.run(argv, env=_cli_env(server), check=False).returncode


def _kubectl_berth_lines(server: KubeAPIServer, *args: str) -> list[str]:
    """`kubectl berth ...` as a user runs it, its output read (and not shown)."""
    argv = [str(kubectl_binary()), "berth", *args]
    done = subprocess.run(argv, env=_cli_env(server), capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(
            f"kubectl berth {' '.join(args)} exited {done.returncode}: {done.stderr}"
        )
    return done.stdout.splitlines()


def _resolved(name: str, server: tuple[str, int]) -> list[str]:
    """What the lab's DNS server answers for name now, as a client would see it."""
    try:
        return resolve(name, server, timeout=1)[0]
    except OSError:
        return []


def _reported_after_move(kubectl: Kubectl, timeout: float = 60) -> dict[str, Any]:
    """Both Machines' status once their heartbeats have seen the move: pulse running on
    host-b, what it left on host-a marked as moved (each is written at its next beat)."""
    deadline = time.monotonic() + timeout
    while True:
        held = {
            m["metadata"]["name"]: next(
                (r for r in (m.get("status") or {}).get("repositories") or [] if r["name"] == REPO),
                None,
            )
            for m in kubectl.json("get", "machines.berth.dev")["items"]
        }
        source, target = held.get("host-a") or {}, held.get("host-b") or {}
        if (
            source.get("movedTo") == "host-b"
            and target.get("dockerRunning")
            and not target.get("movedTo")
        ):
            return held
        if time.monotonic() > deadline:
            raise RuntimeError(f"the heartbeats did not report the move in {timeout:.0f}s: {held}")
        time.sleep(0.5)


def _answers_at(obj: dict[str, Any]) -> str:
    found = obj.get("status", {}).get("endpoints") or []
    return ", ".join(f"{e['address']}:{e['port']} ({e['machine']})" for e in found) or "-"


def _demo(lab: Lab, plane: LabControlPlane) -> dict[str, Any]:
    server, kubectl = plane.server, plane.kubectl()
    say(f"2. deploy pulse on host-a (a counter kept only in RAM, a beat every {BEAT}s)")
    services = pulse.services(interval=BEAT)
    names = {"hostnames": [HOSTNAME], "ttl": 1}
    kubectl.apply(placement(REPO, NAMESPACE, "host-a", services, size="2G", dns=names))
    kubectl(
        "wait",
        "-n",
        NAMESPACE,
        "--for=condition=Ready",
        "--timeout=120s",
        f"rp/{REPO}",
        timeout=150,
    )
    with lab.agent("a") as a:
        guid = next(r.guid for r in a.repositories() if r.name == REPO)
    lab.host("a").run(
        [
            "sh",
            "-c",
            f"head -c 200M /dev/urandom > /var/lib/berth/mounts/{guid}/app-data.bin && sync",
        ]
    )
    say("   RepositoryPlacement pulse: Ready on host-a; 200 MB of app data written into it")
    placed = kubectl.json("get", "-n", NAMESPACE, f"rp/{REPO}", "-o", "json")
    named = ", ".join(_resolved(HOSTNAME, plane.dns.server)) or "-"
    say(f"   pulse answers at {_answers_at(placed)} (status.endpoints); {HOSTNAME} -> {named}")
    time.sleep(1)
    say("   its logs, read where it runs (a session the operator grants after RBAC allows it):")
    if _kubectl_berth(server, "logs", REPO, "pulse", "-n", NAMESPACE, "--tail", "3") != 0:
        raise RuntimeError("kubectl berth logs failed")

    say("\n3. move it to host-b, live (CRIU), with the kubectl plugin; meanwhile a client on")
    say(f"   host-c that knows only the name {HOSTNAME} keeps connecting to it")
    client = subprocess.Popen(
        [*lab.host("c").nsenter(), sys.executable, "-m", "berth_lab.dns", "follow", HOSTNAME,
         "--server", ":".join(map(str, plane.dns.server)), "--port", str(pulse.PORT),
         "--seconds", "30"],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        time.sleep(2)
        code = _kubectl_berth(server, "migrate", REPO, "-n", NAMESPACE, "--from", "host-a",
                              "--to", "host-b", "--checkpoint", "--wait")  # fmt: skip
        if code != 0:
            raise RuntimeError(f"kubectl berth migrate exited {code}")
        followed = json.loads(client.communicate(timeout=60)[0])
    finally:
        client.kill()
    obj = kubectl.json("get", "-n", NAMESPACE, f"rp/{REPO}", "-o", "json")
    last = obj["status"]["lastMigration"]

    say("\n4. pulse on host-b")
    time.sleep(1.5)
    ps = ("docker", "ps", "--format", "{{.Names}}  {{.Status}}  {{.Ports}}")
    if _kubectl_berth(server, "exec", REPO, "-n", NAMESPACE, "--", *ps) != 0:
        raise RuntimeError("kubectl berth exec failed")
    say("   its logs across the move (the log moved with the repository):")
    shown = _kubectl_berth_lines(server, "logs", REPO, "pulse", "-n", NAMESPACE, "--tail", "400")
    after = pulse.beats(shown)
    counters = [c for _, c in after]
    # The beat before the freeze and the first after the restore, from Docker's timestamps.
    gaps = [(after[i + 1][0] - after[i][0]).total_seconds() for i in range(len(after) - 1)]
    gap_at = max(range(len(gaps)), key=gaps.__getitem__)
    before_c, after_c = after[gap_at][1], after[gap_at + 1][1]
    continued = counters == list(range(counters[0], counters[-1] + 1)) and after_c == before_c + 1
    for t, c in after[max(gap_at - 1, 0) : gap_at + 3]:
        say(f"   {t.time()}  {'host-a' if c <= before_c else 'host-b'}  memory counter={c}")
    say(
        f"   last beat on host-a: counter={before_c}; first on host-b: counter={after_c} "
        f"-> {'the counter CONTINUED' if continued else 'the counter was RESET'}"
    )
    say(
        f"   heartbeat gap {gaps[gap_at]:.3f}s; measured downtime "
        f"{last['downtimeSeconds']:.3f}s (Rediacc's reference: about 20 s)"
    )
    reached = " then ".join(followed["addresses"])
    say(f"   pulse answers at {_answers_at(obj)} now; the client on host-c reached it at "
        f"{reached}, longest gap {followed['longest_gap_s']:.3f}s")  # fmt: skip

    say("\n5. both hosts, as their agents reported them at the operator's heartbeat")
    held = _reported_after_move(kubectl)
    for machine in ("host-b", "host-a"):  # the new home, then what the old one kept
        _kubectl_berth(server, "repos", "--machine", machine)
    say("   and pulse's logs, read again where it runs now:")
    if _kubectl_berth(server, "logs", REPO, "pulse", "-n", NAMESPACE, "--tail", "3") != 0:
        raise RuntimeError("kubectl berth logs failed")

    say("\n6. what a user sees afterwards")
    _kubectl_berth(server, "list", "-n", NAMESPACE)
    _kubectl_berth(server, "history", REPO, "-n", NAMESPACE)
    return {
        "migration": last,
        "currentMachine": obj["status"].get("currentMachine"),
        "downtimeSeconds": last["downtimeSeconds"],
        "heartbeatGapSeconds": round(gaps[gap_at], 3),
        "counterBefore": before_c,
        "counterAfter": after_c,
        "counterContinued": continued,
        "bulkBytes": last["bulkBytes"],
        "deltaBytes": last["deltaBytes"],
        "phaseSeconds": last["phaseSeconds"],
        "endpointsBefore": placed["status"].get("endpoints", []),
        "endpointsAfter": obj["status"].get("endpoints", []),
        "dnsClient": followed,
        "heldAfter": held,
    }
