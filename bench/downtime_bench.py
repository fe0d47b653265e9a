"""Downtime of live moves through the operator, and what it is made of, side by side with
two floors measured in the same run: a bare CRIU dump and restore of the same process
trees outside docker, and docker's own checkpoint and restore in one dockerd.

    .venv/bin/python bench/downtime_bench.py [--sizes 1,2,8] [--writes 0,50,500] [--repeat 5]

For each repository size S GiB (an S GiB image holding 0.75*S GiB of data) and each
amount W MiB written while the bulk phase runs, pulse is placed on host-a and moved
between host-a and host-b by patching spec.machine, `--repeat` times. Then the same for
`--ledger` (pulse beside ledger, a writer that fsyncs a record every 10 ms: the fault
tests' application), checking after each move that no record was lost. Measured per
move: status.lastMigration.downtimeSeconds, the longest gap between pulse's answers as a
prober on host-c (no repository there) saw them, probing both hosts every `--probe-ms`,
the steps (freeze, final delta, mount, dockerd, restore, answer), and after the move, with
no prober, both floors on the target host. Then a memory-heavy container (1 GiB in RAM)
is moved, and the bulk throughput of a plain push is measured on a TBF-shaped 1 Gbit/s
lab and unshaped. Writes bench/results/downtime.json; bench/report.py turns the results
into tables.
"""

from __future__ import annotations

import argparse
import json
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import criu_floor
from berth_agent.apps import ledger, pulse
from berth_common import tokens
from berth_common.agent_api.services import RepositoryServices
from berth_common.process import CommandError
from berth_lab import Lab, manifests, plan_lab, workloads
from berth_lab.agents import agent_endpoint
from berth_lab.cluster import LabCluster
from berth_lab.kube import KubeAPIServer
from berth_lab.kubeconfig import Kubectl
from berth_lab.plan import CANONICAL_DATA_DIR
from criu_floor import FloorTimes
from prober import Answer, longest_gap, pulse_answers, read_answers

GiB, MiB = 2**30, 2**20
RESULTS = Path(__file__).resolve().parent / "results"
PROBER = Path(__file__).resolve().parent / "prober.py"
NAMESPACE = "bench"
FILL = 0.75  # share of the image holding data, where the churn leaves room for it
HEADROOM_MIB = 256  # docker's own files and the checkpoints, beside the data
LEDGER_INTERVAL_S = 0.01
PROBER_HOST = "c"  # runs no repository
BARE_FLOOR_PORT_OFFSET = 1000  # the bare trees share the host's network namespace


def filled_mib(size_gib: int, write_mib: int) -> int:
    """How much data the image holds: 75 % of it, or less where the churn needs the room
    (a rewrite lands in new blocks before the old ones are freed)."""
    return min(int(size_gib * 1024 * FILL), size_gib * 1024 - write_mib - HEADROOM_MIB)


def say(text: str) -> None:
    print(f"[downtime] {text}", flush=True)


# --- what a case moves -----------------------------------------------------------------
@dataclass(frozen=True)
class Workload:
    """pulse alone, or pulse beside ledger (whose records are checked after each move).
    pulse answers the prober in both."""

    name: str
    with_ledger: bool

    def services(self, host_port: int) -> RepositoryServices:
        if self.with_ledger:
            return workloads.pulse_and_ledger(host_port, ledger_interval=LEDGER_INTERVAL_S)
        return pulse.services(interval=0.2, host_port=host_port)


PULSE = Workload("pulse", with_ledger=False)
LEDGER = Workload("ledger", with_ledger=True)


# --- the prober, on a lab host of its own ------------------------------------------------
class HostProber:
    """bench/prober.py inside host-c's namespaces, probing pulse on addresses every
    `every` seconds; `answers` holds what it saw once it stopped."""

    def __init__(self, lab: Lab, addresses: list[str], port: int, every: float) -> None:
        self.lab, self.addresses, self.port, self.every = lab, addresses, port, every
        self.answers: list[Answer] = []
        # The host's mount namespace sees this machine's /tmp: the answers come back here.
        self._dir = tempfile.TemporaryDirectory(prefix="berth-prober-")
        self._out = Path(self._dir.name) / "answers.txt"
        self._log = Path(self._dir.name) / "prober.log"

    def __enter__(self) -> HostProber:
        argv = [sys.executable, str(PROBER), "--port", str(self.port), "--every",
                f"{self.every:g}", "--out", str(self._out), *self.addresses]  # fmt: skip
        self._proc = self.lab.host(PROBER_HOST).spawn(argv, self._log)
        deadline = time.monotonic() + 15
        while not (self._out.exists() and self._out.read_text()):
            if self._proc.poll() is not None or time.monotonic() > deadline:
                self.__exit__()
                raise RuntimeError(f"the prober saw no answer: {self._log.read_text()[-500:]}")
            time.sleep(0.05)
        return self

    def __exit__(self, *_: object) -> None:
        self._proc.send_signal(signal.SIGTERM)
        try:
            self._proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()
        self.answers = read_answers(self._out) if self._out.exists() else []
        self._dir.cleanup()

    def longest_gap(self, since: float) -> float:
        return longest_gap(self.answers, since)

    def answered_at(self, address: str, since: float) -> bool:
        return any(a.address == address and a.time >= since for a in self.answers)


# --- placements ------------------------------------------------------------------------
def placement(kubectl: Kubectl, name: str) -> dict[str, Any]:
    got: dict[str, Any] = kubectl.json("get", "-n", NAMESPACE, f"rp/{name}", "-o", "json")
    return got


def place(
    kubectl: Kubectl, name: str, size_gib: int, services: RepositoryServices | list[dict[str, Any]]
) -> None:
    manifest = manifests.placement(
        name, NAMESPACE, "host-a", services, size=f"{size_gib}G", deletionPolicy="Delete"
    )
    kubectl.apply(manifest)
    kubectl("wait", "-n", NAMESPACE, "--for=condition=Ready", "--timeout=180s", f"rp/{name}",
            timeout=200)  # fmt: skip


def remove(kubectl: Kubectl, name: str) -> None:
    # A repository holding GiBs of memory takes minutes to stop and unmount.
    kubectl("delete", "-n", NAMESPACE, f"rp/{name}", "--timeout=300s", timeout=330)


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


# --- the floors: CRIU without berth ------------------------------------------------------
def docker_floor(lab: Lab, host: str, guid: str, containers: list[str], port: int) -> FloorTimes:
    """docker checkpoint create + docker start --checkpoint of the containers, one after
    the other as the agent does, on the dockerd the move just started on host, and the
    time until pulse's port answers."""
    docker = [*workloads.DOCKER, "-H", f"unix:///run/berth/{guid}/docker.sock"]
    run = lab.host(host).run
    name = f"floor-{uuid.uuid4().hex[:6]}"
    t0 = time.monotonic()
    for container in containers:
        run([*docker, "checkpoint", "create", container, name])
    t1 = time.monotonic()
    for container in containers:
        start_from_checkpoint(lab, host, docker, container, name)
    t2 = time.monotonic()
    address = lab.host(host).address
    while time.monotonic() - t2 < 30 and not pulse_answers(address, port):
        time.sleep(0.005)
    t3 = time.monotonic()
    for container in containers:
        run([*docker, "checkpoint", "rm", container, name], check=False)
    return FloorTimes(checkpoint=t1 - t0, restore=t2 - t1, answer=t3 - t2)


def start_from_checkpoint(
    lab: Lab, host: str, docker: list[str], container: str, checkpoint: str
) -> None:
    for attempt in range(6):
        # docker 20.10 refuses a first restore now and then ("content ... already
        # exists"); the agent retries the same way (checkpoint/freeze.py).
        started = lab.host(host).run(
            [*docker, "start", "--checkpoint", checkpoint, container], check=False
        )
        if started.returncode == 0:
            return
        if b"already exists" not in started.stderr or attempt == 5:
            raise RuntimeError(f"floor restore of {container} failed: {started.stderr.decode()}")


def bare_floor(lab: Lab, host: str, services: RepositoryServices, port: int) -> FloorTimes:
    """criu dump + criu restore of the same process trees, outside docker, on host (its
    files on the host's datastore, as the repositories' checkpoints are)."""
    return criu_floor.measure(
        lab.host(host).nsenter(), services, port + BARE_FLOOR_PORT_OFFSET, str(CANONICAL_DATA_DIR)
    )


def median_by(items: list[dict[str, Any]], key: str) -> dict[str, Any]:
    """The item whose key is the median (the lower one of an even count)."""
    return sorted(items, key=lambda item: float(item[key]))[(len(items) - 1) // 2]


# --- one case ----------------------------------------------------------------------------
@dataclass(frozen=True)
class Case:
    workload: Workload
    size_gib: int
    write_mib: int
    port: int

    @property
    def name(self) -> str:
        return f"{self.workload.name[0]}{self.size_gib}g{self.write_mib}m"


@dataclass(frozen=True)
class Measuring:
    """How every case is measured: moves per case, and the prober's interval (s)."""

    repeat: int
    probe_every: float


def ledger_kept(lab: Lab, host: str, name: str) -> dict[str, Any]:
    """After a move: ledger's file on host holds records 1..n, every one it acknowledged."""
    acked = workloads.ledger_acks(lab, host, name)  # first: the file read after has these
    written = workloads.ledger_records(lab, host, name)
    return {"ledger_records": len(written), "ledger_lost": ledger.problems(written, acked)}


def one_move(
    lab: Lab, kubectl: Kubectl, case: Case, guid: str, here: str, measuring: Measuring
) -> dict[str, Any]:
    """Move the case's repository from host `here` to the other one under the prober,
    writing during its bulk phase."""
    there = "b" if here == "a" else "a"
    writer: list[threading.Thread] = []

    def write_during_bulk() -> None:
        thread = threading.Thread(
            target=write_random, args=(lab, here, guid, "data.bin", case.write_mib), daemon=True
        )
        thread.start()
        writer.append(thread)

    addresses = [lab.host("a").address, lab.host("b").address]
    with HostProber(lab, addresses, case.port, measuring.probe_every) as prober:
        time.sleep(0.5)
        started = time.time()
        last = move(kubectl, case.name, f"host-{there}", {"BulkSync": write_during_bulk})
        time.sleep(0.5)
    for thread in writer:
        thread.join()
    run = {
        "to": f"host-{there}",
        "downtime_status_s": last["downtimeSeconds"],
        "downtime_prober_s": round(prober.longest_gap(started), 3),
        "prober_followed": prober.answered_at(lab.host(there).address, started),
        "bulk_bytes": last["bulkBytes"],
        "delta_bytes": last["deltaBytes"],
        "phase_seconds": last["phaseSeconds"],
        "step_seconds": last.get("stepSeconds", {}),
    }
    if case.workload.with_ledger:
        run |= ledger_kept(lab, there, case.name)
    return run


def measure_case(lab: Lab, kubectl: Kubectl, case: Case, measuring: Measuring) -> dict[str, Any]:
    """Place the case's repository on host-a, fill it, then move it `repeat` times
    between the hosts, writing during each bulk phase; after each move, both floors on
    its target. The median move and the median floors stand for the case (these machines
    are noisy), every move and floor is kept. Before each move the target's stale copy
    is deleted, so that every move is a first one: a full bulk sync with the churn
    written while it runs."""
    services = case.workload.services(case.port)
    containers = [s.name for s in services.services if s.checkpoint]
    place(kubectl, case.name, case.size_gib, services)
    guid = workloads.guid(lab, "a", case.name)
    data = filled_mib(case.size_gib, case.write_mib)
    write_random(lab, "a", guid, "data.bin", data)
    runs: list[dict[str, Any]] = []
    docker_floors: list[dict[str, float]] = []
    bare_floors: list[dict[str, float]] = []
    here = "a"
    for i in range(measuring.repeat):
        there = "b" if here == "a" else "a"
        if i:  # each move like the first: a full bulk sync, long enough for the churn
            forget_copy(lab, there, case.name)
        runs.append(one_move(lab, kubectl, case, guid, here, measuring))
        docker_floors.append(docker_floor(lab, there, guid, containers, case.port).record())
        bare_floors.append(bare_floor(lab, there, services, case.port).record())
        here = there
    remove(kubectl, case.name)
    typical = median_by(runs, "downtime_status_s")
    result = {
        "workload": case.workload.name,
        "repository_gib": case.size_gib,
        "data_gib": round(data / 1024, 3),
        "written_during_bulk_mib": case.write_mib,
        "probe_every_s": measuring.probe_every,
        **{k: typical[k] for k in ("downtime_status_s", "downtime_prober_s", "prober_followed",
                                   "delta_bytes", "phase_seconds", "step_seconds")},
        "bulk_bytes": runs[0]["bulk_bytes"],  # the first move's: a full copy
        "floor_docker": median_by(docker_floors, "total"),
        "floor_criu": median_by(bare_floors, "total"),
        "runs": runs,
        "floors_docker": docker_floors,
        "floors_criu": bare_floors,
    }  # fmt: skip
    report_case(case, result)
    return result


def report_case(case: Case, result: dict[str, Any]) -> None:
    runs = result["runs"]
    downtimes = ", ".join(f"{r['downtime_status_s']:.3f}" for r in runs)
    gaps = ", ".join(f"{r['downtime_prober_s']:.3f}" for r in runs)
    say(
        f"{case.workload.name} {case.size_gib} GiB, {case.write_mib} MiB written: downtime "
        f"{result['downtime_status_s']:.3f}s (moves: {downtimes}; prober: {gaps}), delta "
        f"{result['delta_bytes'] / 1e6:.1f} MB, floors: bare CRIU "
        f"{result['floor_criu']['total']:.3f}s, docker {result['floor_docker']['total']:.3f}s"
    )
    say("  steps: " + ", ".join(f"{k} {v:.3f}" for k, v in result["step_seconds"].items()))
    lost = [problem for r in runs for problem in r.get("ledger_lost", [])]
    if case.workload.with_ledger:
        say("  ledger: " + ("; ".join(lost) if lost else "nothing lost in any move"))


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
            guid = agent.create("tput", "8G").guid
            agent.up("tput")
        write_random(lab, "a", guid, "data.bin", data_mib)
        tid = f"tput-{uuid.uuid4().hex[:8]}"
        token = tokens.issue(tid, guid, "host-a", "host-b", lab.pki.client)
        started = time.monotonic()
        with lab.agent("a") as agent:
            events = list(agent.push("tput", agent_endpoint(lab.host("b")), token, tid))
        elapsed = time.monotonic() - started
        result = events[-1]
        rate = result.bytes_sent / elapsed
        out: dict[str, Any] = {
            "bandwidth": bandwidth or "unshaped",
            "bytes": result.bytes_sent,
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
    """host-a and host-b for the repositories, host-c for the prober."""
    Lab(plan_lab("perf", hosts=3)).down()
    lab = Lab(plan_lab("perf", hosts=3, datastore_size=datastore)).up()
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


def cases(sizes: list[int], writes: list[int], ledger_case: str) -> list[Case]:
    """pulse for every size and amount written, then the ledger case ("SIZE,WRITE")."""
    found = [
        Case(PULSE, size, write, port=18000 + 10 * i + j)
        for i, size in enumerate(sizes)
        for j, write in enumerate(writes)
    ]
    if ledger_case:
        size, write = (int(x) for x in ledger_case.split(","))
        found.append(Case(LEDGER, size, write, port=18500))
    return found


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", default="1,2,8", help="repository sizes, GiB")
    parser.add_argument("--writes", default="0,50,500", help="MiB written during bulk")
    parser.add_argument("--ledger", default="2,50", help="SIZE_GIB,WRITE_MIB; '': skip")
    parser.add_argument("--repeat", type=int, default=5, help="moves per case (median)")
    parser.add_argument("--probe-ms", type=int, default=20, help="prober interval, 10-20 ms")
    parser.add_argument("--ram-mib", type=int, default=1024, help="memory-heavy case; 0: skip")
    parser.add_argument("--push-mib", type=int, default=2048, help="throughput case; 0: skip")
    args = parser.parse_args()
    if not 10 <= args.probe_ms <= 20:
        parser.error("--probe-ms: 10 to 20 (issue 18's resolution)")
    measured = cases(
        [int(s) for s in args.sizes.split(",")], [int(w) for w in args.writes.split(",")],
        args.ledger,
    )  # fmt: skip
    measuring = Measuring(repeat=args.repeat, probe_every=args.probe_ms / 1000)
    results: dict[str, Any] = {"started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    datastore = f"{max(24, 3 * max(c.size_gib for c in measured) + 8)}G"
    with cluster_lab(datastore) as (lab, kubectl):
        for case in measured:
            results.setdefault(case.workload.name, []).append(
                measure_case(lab, kubectl, case, measuring)
            )
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
    except CommandError as err:  # a lab host's command; it names its stderr
        print(f"[downtime] {err}", file=sys.stderr)
        sys.exit(1)
    except subprocess.CalledProcessError as err:
        print(f"[downtime] {err}: {err.stderr}", file=sys.stderr)
        sys.exit(1)
