"""Downtime of live moves through the operator, and what it is made of, side by side with
the floor (a bare CRIU checkpoint and restore in one dockerd) measured in the same run.

    .venv/bin/python bench/downtime_bench.py [--sizes 1,2,8] [--writes 0,50,500]

For each repository size S GiB (an S GiB image holding 0.75*S GiB of data) and each
amount W MiB written while the bulk phase runs, pulse is placed on host-a and moved to
host-b by patching spec.machine. Measured: status.lastMigration.downtimeSeconds, the
longest gap an external prober saw (a TCP probe of pulse on both hosts every 50 ms), the
steps (freeze, final delta, mount, dockerd, restore, answer) and, on the same dockerd
afterwards, the floor. Then a memory-heavy container (1 GiB in RAM) is moved, and the
bulk throughput of a plain push is measured on a TBF-shaped 1 Gbit/s lab and unshaped.
Writes bench/results/downtime.json; bench/report.py turns the results into a table.
"""

from __future__ import annotations

import argparse
import itertools
import json
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from berth_agent.apps import pulse
from berth_common import tokens
from berth_lab import Lab, manifests, plan_lab
from berth_lab.agents import agent_endpoint
from berth_lab.cluster import LabCluster
from berth_lab.kube import KubeAPIServer
from berth_lab.kubeconfig import Kubectl

GiB, MiB = 2**30, 2**20
RESULTS = Path(__file__).resolve().parent / "results"
NAMESPACE = "bench"
FILL = 0.75  # share of the image holding data, where the churn leaves room for it
HEADROOM_MIB = 256  # docker's own files and the checkpoints, beside the data


def filled_mib(size_gib: int, write_mib: int) -> int:
    """How much data the image holds: 75 % of it, or less where the churn needs the room
    (a rewrite lands in new blocks before the old ones are freed)."""
    return min(int(size_gib * 1024 * FILL), size_gib * 1024 - write_mib - HEADROOM_MIB)


DOCKER = ["env", "DOCKER_CLI_EXPERIMENTAL=enabled", "/usr/bin/docker"]


def say(text: str) -> None:
    print(f"[downtime] {text}", flush=True)


# --- the external prober -------------------------------------------------------------
class Prober:
    """Asks pulse on every address every `every` seconds; keeps the times it answered."""

    # Every 50 ms: pulse serves one connection at a time (busybox nc), so a faster prober
    # fills its listen queue while it is restored and then measures its own backlog.
    def __init__(self, addresses: list[str], port: int, every: float = 0.05) -> None:
        self.addresses, self.port, self.every = addresses, port, every
        self.answers: list[tuple[float, str]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            for address in self.addresses:
                if pulse_answers(address, self.port):
                    self.answers.append((time.time(), address))
            time.sleep(self.every)

    def __enter__(self) -> Prober:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()

    def longest_gap(self, since: float) -> float:
        times = [t for t, _ in self.answers if t >= since]
        return max((b - a for a, b in itertools.pairwise(times)), default=float("nan"))

    def moved(self, target: str) -> bool:
        return any(address == target for _, address in self.answers)


def pulse_answers(address: str, port: int) -> bool:
    try:
        with socket.create_connection((address, port), timeout=0.05) as conn:
            conn.settimeout(0.2)
            return conn.recv(64).startswith(b"pulse")
    except OSError:
        return False


# --- placements ------------------------------------------------------------------------
def placement(kubectl: Kubectl, name: str) -> dict[str, Any]:
    got: dict[str, Any] = kubectl.json("get", "-n", NAMESPACE, f"rp/{name}", "-o", "json")
    return got


def place(kubectl: Kubectl, name: str, size_gib: int, services: list[dict[str, Any]]) -> None:
    manifest = manifests.placement(
        name, NAMESPACE, "host-a", services, size=f"{size_gib}G", deletionPolicy="Delete"
    )
    kubectl.apply(manifest)
    kubectl("wait", "-n", NAMESPACE, "--for=condition=Ready", "--timeout=180s", f"rp/{name}",
            timeout=200)  # fmt: skip


def remove(kubectl: Kubectl, name: str) -> None:
    kubectl("delete", "-n", NAMESPACE, f"rp/{name}", "--timeout=120s", timeout=150)


def move(
    kubectl: Kubectl, name: str, target: str, on_phase: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Patch spec.machine to target and wait for the migration's end; on_phase maps a
    migration phase to a callable run once when the migration is first seen in it."""
    before = placement(kubectl, name)["metadata"]["generation"]
    kubectl("patch", "-n", NAMESPACE, f"rp/{name}", "--type", "merge",
            "-p", json.dumps({"spec": {"machine": target}}))  # fmt: skip
    pending = dict(on_phase or {})
    deadline = time.monotonic() + 900
    while time.monotonic() < deadline:
        obj = placement(kubectl, name)
        status = obj.get("status") or {}
        phase = (status.get("migration") or {}).get("phase")
        if phase in pending:
            pending.pop(phase)()
        last = status.get("lastMigration") or {}
        if (
            status.get("observedGeneration") == before + 1
            and last.get("to") == target
            and last.get("result")
            and not status.get("migration")
        ):
            if last["result"] != "Succeeded":
                raise RuntimeError(
                    f"{name}: migration ended {last['result']}: {last.get('reason')}"
                )
            return dict(last)
        time.sleep(0.1)
    raise TimeoutError(f"{name}: migration did not finish")


def forget_copy(lab: Lab, host: str, name: str) -> None:
    """Delete the stale copy (and retained base) a previous move left on host."""
    with lab.agent(host) as agent:
        agent.down(name)
        agent.delete(name, confirm=name)


def guid_of(lab: Lab, host: str, name: str) -> str:
    with lab.agent(host) as agent:
        return str(next(r["guid"] for r in agent.repositories() if r["name"] == name))


def write_random(lab: Lab, host: str, guid: str, path: str, mib: int) -> None:
    """mib MiB of incompressible data over the start of a file in the repository (in
    place: a change, not growth), from openssl, which is faster than /dev/urandom."""
    if mib <= 0:
        return
    target = f"/var/lib/berth/mounts/{guid}/{path}"
    lab.host(host).run(
        ["sh", "-c", f"openssl enc -aes-128-ctr -nosalt -pass pass:{uuid.uuid4().hex} "
         f"</dev/zero 2>/dev/null | head -c {mib}M | "
         f"dd of={target} bs=1M conv=notrunc iflag=fullblock status=none && sync"],
        timeout=900,
    )  # fmt: skip


# --- the floor: CRIU in one dockerd, no berth ------------------------------------------
def floor(lab: Lab, host: str, guid: str, port: int) -> dict[str, float]:
    """docker checkpoint create + docker start --checkpoint of pulse, on the dockerd the
    move just started on host, and the time until its port answers."""
    sock = ["-H", f"unix:///run/berth/{guid}/docker.sock"]
    run = lab.host(host).run
    name = f"floor-{uuid.uuid4().hex[:6]}"
    t0 = time.monotonic()
    run([*DOCKER, *sock, "checkpoint", "create", "pulse", name])
    t1 = time.monotonic()
    for attempt in range(6):
        # docker 20.10 refuses a first restore now and then ("content ... already
        # exists"); the agent retries the same way (checkpoint/freeze.py).
        started = run([*DOCKER, *sock, "start", "--checkpoint", name, "pulse"], check=False)
        if started.returncode == 0:
            break
        if b"already exists" not in started.stderr or attempt == 5:
            raise RuntimeError(f"floor restore failed: {started.stderr.decode()}")
    t2 = time.monotonic()
    address = lab.host(host).address
    while time.monotonic() - t2 < 30 and not pulse_answers(address, port):
        time.sleep(0.005)
    t3 = time.monotonic()
    run([*DOCKER, *sock, "checkpoint", "rm", "pulse", name], check=False)
    return {"checkpoint": t1 - t0, "restore": t2 - t1, "answer": t3 - t2, "total": t3 - t0}


def floor_under_probing(lab: Lab, host: str, guid: str, port: int) -> dict[str, float]:
    """The floor under the same prober as the move: pulse answers one connection at a
    time, so the probes queue behind a restore either way and the comparison is fair."""
    with Prober([lab.host("a").address, lab.host("b").address], port):
        time.sleep(0.5)
        return floor(lab, host, guid, port)


def median_by(items: list[dict[str, Any]], key: str) -> dict[str, Any]:
    """The item whose key is the median (the lower one of an even count)."""
    return sorted(items, key=lambda item: float(item[key]))[(len(items) - 1) // 2]


# --- one case ----------------------------------------------------------------------------
def pulse_case(
    lab: Lab, kubectl: Kubectl, size_gib: int, write_mib: int, port: int, repeat: int
) -> dict[str, Any]:
    """Place pulse on host-a, fill it, then move it `repeat` times between the hosts,
    writing write_mib MiB during each bulk phase; the median move and the median floor
    stand for the case (these machines are noisy), every move is kept under "runs".
    Before each move the target's stale copy is deleted, so that every move is a first
    one: a full bulk sync with the churn written while it runs."""
    name = f"p{size_gib}g{write_mib}m"
    services = pulse.services(interval=0.2, host_port=port).model_dump()["services"]
    place(kubectl, name, size_gib, services)
    guid = guid_of(lab, "a", name)
    data = filled_mib(size_gib, write_mib)
    write_random(lab, "a", guid, "data.bin", data)
    a, b = lab.host("a").address, lab.host("b").address
    runs, floors, here = [], [], "a"
    for i in range(repeat):
        there = "b" if here == "a" else "a"
        if i:  # each move like the first: a full bulk sync, long enough for the churn
            forget_copy(lab, there, name)
        writer: list[threading.Thread] = []

        def write_during_bulk(source: str = here, started: list[threading.Thread] = writer) -> None:
            thread = threading.Thread(
                target=write_random, args=(lab, source, guid, "data.bin", write_mib), daemon=True
            )
            thread.start()
            started.append(thread)

        with Prober([a, b], port) as prober:
            time.sleep(0.5)
            started = time.time()
            last = move(kubectl, name, f"host-{there}", {"BulkSync": write_during_bulk})
            time.sleep(0.5)
        for thread in writer:
            thread.join()
        runs.append(
            {
                "to": f"host-{there}",
                "downtime_status_s": last["downtimeSeconds"],
                "downtime_prober_s": round(prober.longest_gap(started), 3),
                "prober_followed": prober.moved(lab.host(there).address),
                "bulk_bytes": last["bulkBytes"],
                "delta_bytes": last["deltaBytes"],
                "phase_seconds": last["phaseSeconds"],
                "step_seconds": last.get("stepSeconds", {}),
            }
        )
        floors.append(floor_under_probing(lab, there, guid, port))
        here = there
    typical = median_by(runs, "downtime_status_s")
    result = {
        "repository_gib": size_gib,
        "data_gib": round(data / 1024, 3),
        "written_during_bulk_mib": write_mib,
        **{k: typical[k] for k in ("downtime_status_s", "downtime_prober_s", "prober_followed",
                                   "delta_bytes", "phase_seconds", "step_seconds")},
        "bulk_bytes": runs[0]["bulk_bytes"],  # the first move's: a full copy
        "floor": median_by(floors, "total"),
        "runs": runs,
        "floors": floors,
    }  # fmt: skip
    remove(kubectl, name)
    downtimes = ", ".join(f"{r['downtime_status_s']:.3f}" for r in runs)
    say(
        f"{size_gib} GiB, {write_mib} MiB written: downtime {result['downtime_status_s']:.3f}s "
        f"(moves: {downtimes}; prober {result['downtime_prober_s']:.3f}s), delta "
        f"{result['delta_bytes'] / 1e6:.1f} MB, floor {result['floor']['total']:.3f}s"
    )
    say("  steps: " + ", ".join(f"{k} {v:.3f}" for k, v in result["step_seconds"].items()))
    return result


def memory_case(lab: Lab, kubectl: Kubectl, ram_mib: int) -> dict[str, Any]:
    """A container holding ram_mib MiB in RAM (busybox awk keeps a string that long)."""
    name = f"mem{ram_mib}m"
    hold = (
        f'BEGIN {{ s = sprintf("%{ram_mib * MiB}s", ""); '
        'print "holding " length(s); fflush(); while (1) system("sleep 3600") }'
    )
    services = [
        {"name": "holder", "image": "berth/busybox:1", "command": ["awk", hold],
         "environment": {}, "checkpoint": True, "ports": []},
    ]  # fmt: skip
    place(kubectl, name, 4, services)
    last = move(kubectl, name, "host-b")
    remove(kubectl, name)
    say(f"{ram_mib} MiB in RAM: downtime {last['downtimeSeconds']:.3f}s, "
        f"delta {last['deltaBytes'] / 1e6:.0f} MB")  # fmt: skip
    return {
        "ram_mib": ram_mib,
        "downtime_status_s": last["downtimeSeconds"],
        "delta_bytes": last["deltaBytes"],
        "checkpoint_seconds": last.get("checkpointSeconds"),
        "step_seconds": last.get("stepSeconds", {}),
        "lazy_pages": "not implemented",
    }


def throughput(bandwidth: str | None, data_mib: int) -> dict[str, Any]:
    """A full push of data_mib MiB between two hosts of a lab shaped to bandwidth."""
    lab_name = "bw" if bandwidth else "bwfree"
    Lab(plan_lab(lab_name, hosts=2)).down()
    lab = Lab(plan_lab(lab_name, hosts=2, bandwidth=bandwidth, datastore_size="12G")).up()
    try:
        with lab.agent("a") as agent:
            guid = agent.create("tput", "8G")["guid"]
            agent.up("tput")
        write_random(lab, "a", guid, "data.bin", data_mib)
        tid = f"tput-{uuid.uuid4().hex[:8]}"
        token = tokens.issue(tid, guid, "host-a", "host-b", lab.pki.client)
        started = time.monotonic()
        with lab.agent("a") as agent:
            events = list(agent.push("tput", agent_endpoint(lab.host("b")), token, tid))
        elapsed = time.monotonic() - started
        result = events[-1]
        rate = result["bytes_sent"] / elapsed
        out: dict[str, Any] = {
            "bandwidth": bandwidth or "unshaped",
            "bytes": result["bytes_sent"],
            "seconds": round(elapsed, 3),
            "bytes_per_s": round(rate),
        }
        if bandwidth:
            link = parse_bits(bandwidth) / 8
            out["share_of_link"] = round(rate / link, 3)
        say(f"push {bandwidth or 'unshaped'}: {rate / 1e6:.1f} MB/s"
            + (f" = {out['share_of_link']:.0%} of the link" if bandwidth else ""))  # fmt: skip
        return out
    finally:
        lab.down()


def parse_bits(rate: str) -> float:
    units = {"kbit": 1e3, "mbit": 1e6, "gbit": 1e9}
    for unit, factor in units.items():
        if rate.endswith(unit):
            return float(rate[: -len(unit)]) * factor
    raise ValueError(f"rate {rate!r}: use kbit, mbit or gbit")


@contextmanager
def cluster_lab(datastore: str) -> Iterator[tuple[Lab, Kubectl]]:
    Lab(plan_lab("perf", hosts=2)).down()
    lab = Lab(plan_lab("perf", hosts=2, datastore_size=datastore)).up()
    try:
        with KubeAPIServer() as server:
            kubectl = server.kubectl()
            kubectl("create", "namespace", NAMESPACE)
            running = LabCluster(lab, kubectl, [NAMESPACE]).up()
            try:
                yield lab, kubectl
            finally:
                running.down()
    finally:
        lab.down()


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", default="1,2,8", help="repository sizes, GiB")
    parser.add_argument("--writes", default="0,50,500", help="MiB written during bulk")
    parser.add_argument("--ram-mib", type=int, default=1024, help="memory-heavy case; 0: skip")
    parser.add_argument("--push-mib", type=int, default=2048, help="throughput case; 0: skip")
    parser.add_argument("--repeat", type=int, default=3, help="moves per case (median)")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    writes = [int(w) for w in args.writes.split(",")]
    results: dict[str, Any] = {"started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    datastore = f"{max(24, 3 * max(sizes) + 8)}G"
    with cluster_lab(datastore) as (lab, kubectl):
        cases = []
        for i, size in enumerate(sizes):
            for j, write in enumerate(writes):
                port = 18000 + 10 * i + j
                cases.append(pulse_case(lab, kubectl, size, write, port, args.repeat))
        results["pulse"] = cases
        if args.ram_mib:
            results["memory"] = memory_case(lab, kubectl, args.ram_mib)
    if args.push_mib:
        results["throughput"] = [throughput("1gbit", args.push_mib),
                                 throughput(None, args.push_mib)]  # fmt: skip
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "downtime.json").write_text(json.dumps(results, indent=2) + "\n")
    say(f"wrote {RESULTS / 'downtime.json'}")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except subprocess.CalledProcessError as err:
        print(f"[downtime] {err}: {err.stderr}", file=sys.stderr)
        sys.exit(1)
