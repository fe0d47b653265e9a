"""`berth-lab demo`: the main job on the embedded lab, narrated.

pulse runs on host-a; it moves with its memory to host-b; the counter keeps counting.
"""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path
from typing import Any

from berth_agent.apps import pulse
from berth_agent.client import AgentClient
from berth_lab.agents import agent_endpoint
from berth_lab.lab import Lab
from berth_lab.plan import plan_lab
from berth_operator.migration.driver import MigrationDriver
from berth_operator.migration.state import MigrationState, Mode

DEMO_LAB = "demo"
REPO = "pulse"
BEAT = 0.25  # seconds between beats: fine enough to see the gap


class LabAgents:
    def __init__(self, lab: Lab) -> None:
        self.lab = lab

    def client(self, machine: str) -> AgentClient:
        return self.lab.agent(machine)

    def endpoint(self, machine: str) -> str:
        return agent_endpoint(self.lab.host(machine))


def say(text: str = "") -> None:
    print(text, flush=True)


def _beats(agent: AgentClient, tail: int = 400) -> list[tuple[Any, int]]:
    return pulse.beats(agent.logs(REPO, "pulse", tail=tail))


def _progress(state: MigrationState, event: dict[str, Any]) -> None:
    kind = event["event"]
    if kind == "phase":
        say(f"  phase  {event['from']:>10} -> {event['to']}")
    elif kind == "progress":
        total = max(event["bytes_total"], 1)
        bar = "#" * int(30 * event["bytes_done"] / total)
        print(
            f"\r         {event['label']:6} [{bar:30}] {event['bytes_done'] / 2**20:7.1f}"
            f" / {total / 2**20:.1f} MiB  {event['rate'] / 1e6:6.1f} MB/s",
            end="",
            flush=True,
        )
    elif kind == "pushed":
        say(
            f"\r         {event['label']:6} {event['mode']:5} sent {event['bytes'] / 1e6:8.2f} MB "
            f"in {event['seconds']:.2f}s" + " " * 30
        )
    elif kind == "frozen":
        say(f"         frozen: checkpointed {event['checkpointed']}, stopped {event['stopped']}")
    elif kind == "answered":
        say(f"         target answers: DOWNTIME {event['downtime']:.3f}s")


def run_demo(keep: bool = False, json_path: Path | None = None) -> int:
    say("berth demo: a repository moves between two hosts with its processes' memory\n")
    Lab(plan_lab(DEMO_LAB, hosts=2)).down()  # a previous run may have left it up
    say("1. lab: two hosts (network + mount namespaces, btrfs datastores, berth-agent each)")
    started = time.monotonic()
    lab = Lab(plan_lab(DEMO_LAB, hosts=2, datastore_size="10G")).up()
    for host in lab.hosts.values():
        say(f"   {host.name}  {host.address}  agent {agent_endpoint(host)}")
    say(f"   up in {time.monotonic() - started:.1f}s\n")
    try:
        summary = _demo(lab)
    except BaseException:
        say("\ndemo failed; tearing the lab down")
        lab.down()
        raise
    if json_path:
        json_path.write_text(json.dumps(summary, indent=2, default=str))
        say(f"summary written to {json_path}")
    if keep:
        say("\nThe lab is still up. Look around:")
        say(f"  berth-lab --name {DEMO_LAB} status")
        say(f"  berth-lab --name {DEMO_LAB} exec host-b -- berth-agent repo status {REPO}")
        say(f"  berth-lab --name {DEMO_LAB} exec host-a -- berth-agent repo list")
        say(f"Tear it down: berth-lab --name {DEMO_LAB} down")
    else:
        lab.down()
        say("\nlab torn down (run with --keep to explore it)")
    return 0 if summary["counterContinued"] else 1


def _demo(lab: Lab) -> dict[str, Any]:
    a, b = lab.agent("a"), lab.agent("b")
    say(f"2. deploy pulse on host-a (a counter kept only in RAM, a beat every {BEAT}s)")
    services = pulse.services(interval=BEAT)
    guid = a.create(REPO, "2G", services=services.model_dump())["guid"]
    a.up(REPO, wait_answer=30)
    lab.host("a").run(
        [
            "sh",
            "-c",
            f"head -c 200M /dev/urandom > /var/lib/berth/mounts/{guid}/app-data.bin && sync",
        ]
    )
    say("   200 MB of application data written into the repository")
    for _ in range(3):
        time.sleep(1)
        beats = _beats(a, tail=1)
        say(f"   host-a  pulse: memory counter={beats[-1][1]}")

    say("\n3. migrate pulse host-a -> host-b, live (CRIU checkpoint), while it runs")
    state = MigrationState(
        id=f"demo-{uuid.uuid4().hex[:8]}",
        repository=REPO,
        guid=guid,
        source="host-a",
        target="host-b",
        mode=Mode.LIVE,
    )
    driver = MigrationDriver(LabAgents(lab), lab.pki.client, on_event=_progress)
    state = driver.run(state)
    if state.result != "Succeeded":
        raise RuntimeError(f"migration ended {state.result}: {state.reason}")

    say("\n4. pulse on host-b")
    time.sleep(1.5)
    after = _beats(b)
    counters = [c for _, c in after]
    # The beat before the freeze and the first after the restore, from Docker's timestamps.
    gaps = [(after[i + 1][0] - after[i][0]).total_seconds() for i in range(len(after) - 1)]
    gap_at = max(range(len(gaps)), key=gaps.__getitem__)
    before_c, after_c = after[gap_at][1], after[gap_at + 1][1]
    continued = counters == list(range(counters[0], counters[-1] + 1)) and after_c == before_c + 1
    for t, c in after[gap_at - 1 : gap_at + 3]:
        where = "host-a" if c <= before_c else "host-b"
        say(f"   {t.time()}  {where}  memory counter={c}")
    say(
        f"   last beat on host-a: counter={before_c}; first on host-b: counter={after_c} "
        f"-> {'the counter CONTINUED' if continued else 'the counter was RESET'}"
    )
    heartbeat_gap = gaps[gap_at] - BEAT
    say(
        f"   heartbeat gap {gaps[gap_at]:.3f}s (minus one beat: {heartbeat_gap:.3f}s); "
        f"measured downtime {state.downtime_seconds:.3f}s"
    )

    say("\n5. state of both hosts")
    for name, agent in (("host-a", a), ("host-b", b)):
        s = agent.status(REPO)
        base = (lab.host(name).plan.datastore_mount / "bases" / guid / "base.json").exists()
        containers = ", ".join(f"{c['name']}={c['state']}" for c in s["containers"]) or "none"
        say(
            f"   {name}: mounted={'yes' if s['mounted'] else 'no'}  "
            f"dockerd={'up' if s['docker']['running'] else 'down'}  containers: {containers}  "
            f"base retained={'yes' if base else 'no'}"
            + (f"  (stale copy, moved to {s['moved_to']})" if s.get("moved_to") else "")
        )
    say(
        f"\n   bulk rounds (MB): {[round(x / 1e6, 1) for x in state.bulk_rounds]}, "
        f"final delta {state.delta_bytes / 1e6:.2f} MB, checkpoint {state.checkpoint_seconds:.2f}s"
    )
    say("   phase durations: " + ", ".join(f"{k} {v:.2f}s" for k, v in state.phase_seconds.items()))
    a.close()
    b.close()
    return {
        "migration": state.model_dump(mode="json"),
        "downtimeSeconds": state.downtime_seconds,
        "heartbeatGapSeconds": round(gaps[gap_at], 3),
        "counterBefore": before_c,
        "counterAfter": after_c,
        "counterContinued": continued,
        "bulkBytes": state.bulk_bytes,
        "deltaBytes": state.delta_bytes,
        "phaseSeconds": state.phase_seconds,
    }
