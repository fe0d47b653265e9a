"""The operator at scale: many placements over many (simulated) machines.

    .venv/bin/python bench/operator_scale.py [--placements 500 --machines 20 --concurrent 10]

Starts a real kube-apiserver + etcd (`berth_lab.kube.KubeAPIServer`), installs berth's
CRDs and the chart's RBAC, and runs `--machines` simulated agents in one process
(`bench/simagent.py`: the agent API the operator calls, mTLS with certificates from
`berth_common.pki`, repositories in memory, small sleeps) with a Machine each. Creates
`--placements` RepositoryPlacements spread over the machines, each repository already
running where its placement says, and starts `berth-operator` as a process of this
machine, as the chart's ServiceAccount, with the operator's default poll and heartbeat
intervals (`OperatorConfig`; only the cluster-wide migration limit is raised to
`--concurrent`). Then, per variant of the operator's settings:

- all_ready_s: from the operator's start until every placement is Ready;
- at rest (`--rest-seconds` after `--settle-seconds`): the operator's RSS
  (/proc/PID/status) and CPU (utime+stime from /proc/PID/stat over the window, percent
  of one core), the requests per second the simulated agents and the API server receive;
- one isolated move, then `--concurrent` moves at once (spec.machine patched): the time
  from each patch to the first status that shows the operator acting on it (a watch on
  the placements: status.migration set or status.phase no longer Placed), to Ready on the
  new machine, and the operator's RSS and CPU meanwhile.

Variants: `before` runs the operator without its shared looks
(BERTH_INVENTORY_CACHE_SECONDS=0: every reconcile lists the Machines, every placement
and every machine's repositories itself), `after` with its default; `--variants after`
runs one. Between variants the operator is stopped and the placements are recreated
where their repositories now run, so every variant starts alike.

kopf runs each placement's daemon in its thread pool for the daemon's whole life, and
berth caps that pool at 64 threads: with more placements, the rest never start and the
Machines' heartbeat timers starve. So that everything else can be measured at scale, the
bench raises the pool in the operator process (`--kopf-workers`, default placements +
machines + 64; 0 measures berth's own 64) and records the size in the results.

Writes bench/results/operator_scale.json and prints a summary. Everything it starts
(operator, simulated agents, API server) is stopped at the end, also on Ctrl-C or an
error. Run as root after `hack/kube/build.sh`, under `flock /tmp/berth-lab.lock` when others
run the lab's tests or benchmarks on the same machine.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import shutil
import signal
import ssl
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

import httpx

from berth_api.v1alpha1 import GROUP, VERSION
from berth_common.pki import CertFiles, create_ca, issue
from berth_lab.cluster import (
    OPERATOR_NAMESPACE,
    RELEASE,
    OperatorProcess,
    chart_rbac,
    install_crds,
)
from berth_lab.kube import KubeAPIServer
from berth_lab.kubeconfig import service_account_kubeconfig
from berth_operator.config import OperatorConfig
from report import OPERATOR_ROWS, operator_figure

BENCH = Path(__file__).resolve().parent
RESULTS = BENCH / "results"
NAMESPACE = "berth-bench"
PLACEMENTS_PATH = f"/apis/{GROUP}/{VERSION}/namespaces/{NAMESPACE}/repositoryplacements"
MACHINES_PATH = f"/apis/{GROUP}/{VERSION}/machines"
CLIENT_CN = "berth-operator"
CLK_TCK = os.sysconf("SC_CLK_TCK")
REJECTED = "rejected (429)"
BERTH_KOPF_WORKERS = 64  # settings.execution.max_workers in berth_operator/handlers.py
VARIANTS: dict[str, dict[str, str]] = {
    "before": {"BERTH_INVENTORY_CACHE_SECONDS": "0"},
    "after": {},
}


def say(text: str) -> None:
    print(f"[operator-scale] {text}", flush=True)


# --- processes -----------------------------------------------------------------------
@dataclass(frozen=True)
class ProcSample:
    at: float  # monotonic seconds
    cpu_seconds: float  # utime + stime
    rss_bytes: int


def sample(pid: int) -> ProcSample:
    at = time.monotonic()
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    # After the command: state is field 3, utime field 14, stime field 15 (proc(5)).
    cpu = (int(fields[11]) + int(fields[12])) / CLK_TCK
    rss = 0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            rss = int(line.split()[1]) * 1024
    return ProcSample(at, cpu, rss)


def cpu_percent(first: ProcSample, last: ProcSample) -> float:
    return 100 * (last.cpu_seconds - first.cpu_seconds) / max(last.at - first.at, 1e-9)


class Sampler:
    """Samples a process every `every` seconds in a thread; keeps the peak RSS."""

    def __init__(self, pid: int, every: float = 0.5) -> None:
        self.pid, self.every = pid, every
        self.peak_rss = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sampler", daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(OSError):
                self.peak_rss = max(self.peak_rss, sample(self.pid).rss_bytes)
            self._stop.wait(self.every)

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()


class SimAgents:
    """bench/simagent.py as a child process: every simulated machine's agent."""

    def __init__(self, spec: Path, log: Path) -> None:
        setpriv = shutil.which("setpriv")
        argv = [sys.executable, str(BENCH / "simagent.py"), str(spec)]
        with log.open("wb") as err:
            self.proc = subprocess.Popen(
                # Dies with this process even if it is killed (PR_SET_PDEATHSIG).
                [setpriv, "--pdeathsig", "KILL", "--", *argv] if setpriv else argv,
                stdout=subprocess.PIPE,
                stderr=err,
                stdin=subprocess.DEVNULL,
                text=True,
            )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            self.stop()
            raise RuntimeError(f"simagent did not start: {log.read_text()[-2000:]}")
        ready = json.loads(line)
        self.ports: dict[str, int] = ready["machines"]
        self._control = httpx.Client(
            base_url=f"http://127.0.0.1:{ready['control']}", trust_env=False, timeout=10
        )

    def stats(self) -> dict[str, Any]:
        stats: dict[str, Any] = self._control.get("/stats").json()
        return stats

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


# --- the API server --------------------------------------------------------------------
def admin_client(kube: KubeAPIServer) -> httpx.Client:
    tls = ssl.create_default_context(cafile=str(kube.pki.ca.cert))
    tls.load_cert_chain(str(kube.pki.admin.cert), str(kube.pki.admin.key))
    return httpx.Client(base_url=kube.url, verify=tls, trust_env=False, timeout=60)


def checked(response: httpx.Response) -> Any:
    if response.status_code >= 400:
        raise RuntimeError(
            f"{response.request.method} {response.request.url.path}: "
            f"{response.status_code} {response.text[:500]}"
        )
    return response.json()


def apiserver_requests(api: httpx.Client) -> Counter[str]:
    """apiserver_request_total summed per 'VERB resource' (all clients); the requests it
    turned away with 429 Too Many Requests (API Priority and Fairness) also under REJECTED."""
    counts: Counter[str] = Counter()
    for line in api.get("/metrics").text.splitlines():
        if not line.startswith("apiserver_request_total{"):
            continue
        labels_text, value = line[len("apiserver_request_total{") :].rsplit("} ", 1)
        labels = dict(part.split("=", 1) for part in labels_text.split('",') if "=" in part)
        verb = labels.get("verb", "").strip('"')
        resource = labels.get("resource", "").strip('"') or "-"
        subresource = labels.get("subresource", "").strip('"')
        key = f"{verb} {resource}" + (f"/{subresource}" if subresource else "")
        counts[key] += int(float(value))
        if labels.get("code", "").strip('"') == "429":
            counts[REJECTED] += int(float(value))
    return counts


def requests_per_s(after: Counter[str], before: Counter[str], window: float) -> float:
    diff = after - before
    return round((sum(diff.values()) - diff[REJECTED]) / window, 1)


def is_ready(obj: dict[str, Any]) -> bool:
    status = obj.get("status") or {}
    if status.get("observedGeneration") != obj["metadata"].get("generation"):
        return False
    if status.get("currentMachine") != obj["spec"]["machine"] or status.get("migration"):
        return False
    conditions = status.get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


def acting(obj: dict[str, Any]) -> bool:
    """The operator shows it acts on a change: a migration in status, or phase not Placed."""
    status = obj.get("status") or {}
    return bool(status.get("migration")) or status.get("phase") not in (None, "Placed")


class PlacementWatch:
    """A watch on the bench's placements: the latest of each, and when each event came."""

    def __init__(self, api: httpx.Client) -> None:
        self.api = api
        self.objects: dict[str, dict[str, Any]] = {}
        self.events: list[tuple[float, str, dict[str, Any]]] = []  # (monotonic, name, obj)
        self.lock = threading.Lock()
        self.changed = threading.Condition(self.lock)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="watch", daemon=True)
        self._rv = ""

    def start(self) -> PlacementWatch:
        self._list()
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=15)

    def _list(self) -> None:
        listed = checked(self.api.get(PLACEMENTS_PATH))
        with self.changed:
            self.objects = {o["metadata"]["name"]: o for o in listed["items"]}
            self._rv = listed["metadata"]["resourceVersion"]
            self.changed.notify_all()

    def _run(self) -> None:
        while not self._stop.is_set():
            query = f"watch=1&allowWatchBookmarks=true&timeoutSeconds=10&resourceVersion={self._rv}"
            try:
                with self.api.stream("GET", f"{PLACEMENTS_PATH}?{query}", timeout=30) as resp:
                    if resp.status_code != 200:
                        resp.read()
                        time.sleep(0.5)
                        self._list()
                        continue
                    for line in resp.iter_lines():
                        if self._stop.is_set():
                            return
                        if line.strip():
                            self._event(time.monotonic(), json.loads(line))
            except (httpx.HTTPError, ValueError, RuntimeError):
                if not self._stop.is_set():
                    time.sleep(0.5)
                    with contextlib.suppress(httpx.HTTPError, RuntimeError):
                        self._list()

    def _event(self, at: float, event: dict[str, Any]) -> None:
        kind, obj = event["type"], event["object"]
        if kind == "ERROR":  # 410 Gone: the version is too old; list again
            self._list()
            return
        self._rv = obj["metadata"].get("resourceVersion", self._rv)
        if kind == "BOOKMARK":
            return
        name = obj["metadata"]["name"]
        with self.changed:
            if kind == "DELETED":
                self.objects.pop(name, None)
            else:
                self.objects[name] = obj
                self.events.append((at, name, obj))
            self.changed.notify_all()

    def wait(self, done: Callable[[], bool], timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        with self.changed:
            while not done():
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self.changed.wait(min(left, 1.0))
        return True

    def ready_count(self) -> int:
        return sum(is_ready(o) for o in self.objects.values())

    def phases(self) -> dict[str, int]:
        """How many placements show each status.phase (Stalled ones by reason)."""
        counts: Counter[str] = Counter()
        with self.lock:
            for obj in self.objects.values():
                status = obj.get("status") or {}
                phase = str(status.get("phase"))
                if phase == "Stalled":
                    stalled = [c for c in status.get("conditions") or [] if c["type"] == "Stalled"]
                    phase += f"/{stalled[0].get('reason')}" if stalled else ""
                counts[phase] += 1
        return dict(counts.most_common())

    def ever(self, test: Callable[[dict[str, Any]], bool]) -> int:
        """How many placements had an event that passes test since the last trim."""
        with self.lock:
            return len({name for _at, name, obj in self.events if test(obj)})

    def first(self, name: str, since: float, test: Callable[[dict[str, Any]], bool]) -> float:
        """Seconds from `since` to the first event of `name` after it that passes test."""
        with self.lock:
            for at, event_name, obj in self.events:
                if at >= since and event_name == name and test(obj):
                    return at - since
        return math.nan

    def trim(self) -> None:
        with self.lock:
            self.events.clear()


# --- the run ---------------------------------------------------------------------------
class Interrupted(KeyboardInterrupt):
    pass


def _interrupt(signum: int, _frame: FrameType | None) -> None:
    raise Interrupted(f"signal {signum}")


@dataclass
class Setup:
    kube: KubeAPIServer
    api: httpx.Client
    sim: SimAgents
    operator_kubeconfig: Path
    tls_dir: Path
    work: Path
    machines: list[str]
    args: argparse.Namespace


def placement_name(i: int) -> str:
    return f"rp-{i:04d}"


def repository_name(i: int) -> str:
    return f"repo-{i:04d}"


def create_placements(api: httpx.Client, where: dict[int, str]) -> None:
    for i, machine in sorted(where.items()):
        checked(
            api.post(
                PLACEMENTS_PATH,
                json={
                    "apiVersion": f"{GROUP}/{VERSION}",
                    "kind": "RepositoryPlacement",
                    "metadata": {"name": placement_name(i), "namespace": NAMESPACE},
                    "spec": {"repository": repository_name(i), "machine": machine},
                },
            )
        )


def delete_placements(api: httpx.Client) -> None:
    """With the operator stopped: drop kopf's finalizers, delete, wait until gone."""
    for obj in checked(api.get(PLACEMENTS_PATH))["items"]:
        if obj["metadata"].get("finalizers"):
            checked(
                api.patch(
                    f"{PLACEMENTS_PATH}/{obj['metadata']['name']}",
                    json={"metadata": {"finalizers": None}},
                    headers={"Content-Type": "application/merge-patch+json"},
                )
            )
    checked(api.delete(PLACEMENTS_PATH))
    deadline = time.monotonic() + 60
    while checked(api.get(PLACEMENTS_PATH))["items"]:
        if time.monotonic() > deadline:
            raise RuntimeError("placements not deleted after 60 s")
        time.sleep(0.5)


def setup(args: argparse.Namespace, stack: contextlib.ExitStack, work: Path) -> Setup:
    say("starting kube-apiserver + etcd")
    kube = KubeAPIServer(work / "kube", keep_state=False).start()
    stack.callback(kube.stop)
    kubectl = kube.kubectl()
    install_crds(kubectl)
    kubectl("create", "namespace", OPERATOR_NAMESPACE)
    kubectl.apply(chart_rbac())
    operator_kubeconfig = service_account_kubeconfig(
        kubectl, OPERATOR_NAMESPACE, RELEASE, work / "operator.kubeconfig"
    )
    kubectl("create", "namespace", NAMESPACE)

    say(f"certificates and {args.machines} simulated agents")
    pki = work / "pki"
    ca = create_ca(CertFiles(pki / "ca.crt", pki / "ca.key"), cn="berth bench CA")
    tls_dir = work / "operator-tls"
    issue(ca, CertFiles(tls_dir / "tls.crt", tls_dir / "tls.key"), CLIENT_CN)
    shutil.copyfile(ca.cert, tls_dir / "ca.crt")
    machines = [f"sim-{m:02d}" for m in range(args.machines)]
    simulated = []
    for m, name in enumerate(machines):
        served = CertFiles(pki / f"{name}.crt", pki / f"{name}.key")
        issue(ca, served, name, ips=("127.0.0.1",))
        held = [repository_name(i) for i in range(args.placements) if i % args.machines == m]
        simulated.append(
            {"name": name, "cert": str(served.cert), "key": str(served.key), "repositories": held}
        )
    spec = {"ca": str(ca.cert), "client_cn": CLIENT_CN, "machines": simulated}
    (work / "simagents.json").write_text(json.dumps(spec, indent=1))
    sim = SimAgents(work / "simagents.json", work / "simagent.log")
    stack.callback(sim.stop)

    api = admin_client(kube)
    stack.callback(api.close)
    # Each machine is source or target of at most this many of the concurrent moves.
    per_machine = max(1, math.ceil(2 * args.concurrent / args.machines))
    for name in machines:
        checked(
            api.post(
                MACHINES_PATH,
                json={
                    "apiVersion": f"{GROUP}/{VERSION}",
                    "kind": "Machine",
                    "metadata": {"name": name},
                    "spec": {
                        "endpoint": f"https://127.0.0.1:{sim.ports[name]}",
                        "caBundle": ca.cert.read_text(),
                        "maxConcurrentMigrations": per_machine,
                    },
                },
            )
        )
    return Setup(kube, api, sim, operator_kubeconfig, tls_dir, work, machines, args)


def operator_env(args: argparse.Namespace, variant: str) -> dict[str, str]:
    defaults = OperatorConfig()
    env = {
        # OperatorProcess sets the lab's fast intervals; a bench measures the defaults.
        "BERTH_HEARTBEAT_SECONDS": str(defaults.heartbeat_seconds),
        "BERTH_POLL_SECONDS": str(defaults.poll_seconds),
        "BERTH_CLUSTER_MAX_MIGRATIONS": str(max(args.concurrent, defaults.cluster_max_migrations)),
        **VARIANTS[variant],
    }
    if kopf_workers(args) > BERTH_KOPF_WORKERS:
        env["BERTH_BENCH_KOPF_WORKERS"] = str(kopf_workers(args))
    return env


def kopf_workers(args: argparse.Namespace) -> int:
    """The operator's kopf pool: berth's own, or raised to one thread per placement (each
    one's daemon holds one for good) plus room for the heartbeats and event handlers."""
    if args.kopf_workers < 0:
        return max(BERTH_KOPF_WORKERS, int(args.placements) + int(args.machines) + 64)
    return max(BERTH_KOPF_WORKERS, int(args.kopf_workers))


# --kopf-workers: raises the cap of kopf's pool in the operator process only, through this
# sitecustomize on its PYTHONPATH (see the module's docstring). max(): a larger pool that
# berth sets itself is left as it is.
KOPF_WORKERS_SHIM = """\
\"\"\"Written by bench/operator_scale.py --kopf-workers: kopf's pool has at least N threads.\"\"\"

import os

import kopf._cogs.configs.configuration as configuration

_WORKERS = int(os.environ["BERTH_BENCH_KOPF_WORKERS"])
_max_workers = configuration.ExecutionSettings.max_workers


def _at_least(self, value):
    _max_workers.fset(self, max(value, _WORKERS))


configuration.ExecutionSettings.max_workers = _max_workers.setter(_at_least)
"""


def kopf_workers_shim(work: Path) -> dict[str, str]:
    shim = work / "kopf-workers"
    shim.mkdir(exist_ok=True)
    (shim / "sitecustomize.py").write_text(KOPF_WORKERS_SHIM)
    return {"PYTHONPATH": str(shim)}


def moves(
    objects: dict[str, dict[str, Any]], machines: list[str], count: int
) -> list[tuple[str, str, str]]:
    """`count` (placement, source, target) with sources and targets spread evenly."""
    by_machine: dict[str, list[str]] = {m: [] for m in machines}
    for name, obj in sorted(objects.items()):
        if is_ready(obj):
            by_machine[obj["spec"]["machine"]].append(name)
    chosen: list[tuple[str, str, str]] = []
    for k in range(count):
        source = machines[(2 * k) % len(machines)]
        target = machines[(2 * k + 1) % len(machines)]
        if not by_machine[source]:
            raise RuntimeError(f"no Ready placement on {source} left to move")
        chosen.append((by_machine[source].pop(0), source, target))
    return chosen


def measure_moves(
    s: Setup,
    watch: PlacementWatch,
    pid: int,
    chosen: list[tuple[str, str, str]],
    timeout: float,
) -> dict[str, Any]:
    """Patch spec.machine of every chosen placement at once; wait until all are Ready."""
    names = [c[0] for c in chosen]
    targets = {name: target for name, _source, target in chosen}
    agents_before, api_before = s.sim.stats(), apiserver_requests(s.api)
    patched: dict[str, float] = {}
    with Sampler(pid) as sampler:
        first = sample(pid)
        for name, _source, target in chosen:
            patched[name] = time.monotonic()
            checked(
                s.api.patch(
                    f"{PLACEMENTS_PATH}/{name}",
                    json={"spec": {"machine": target}},
                    headers={"Content-Type": "application/merge-patch+json"},
                )
            )
        done = watch.wait(
            lambda: all(
                is_ready(watch.objects[n]) and watch.objects[n]["spec"]["machine"] == targets[n]
                for n in names
            ),
            timeout,
        )
        last = sample(pid)
    agents_after, api_after = s.sim.stats(), apiserver_requests(s.api)
    window = last.at - first.at
    first_phase = [watch.first(n, patched[n], acting) for n in names]
    ready = [
        watch.first(n, patched[n], lambda o: is_ready(o) and bool(o["status"].get("lastMigration")))
        for n in names
    ]
    results = [(watch.objects[n].get("status") or {}).get("lastMigration") or {} for n in names]
    return {
        "moves": len(chosen),
        "all_moved": done,
        "window_s": round(window, 2),
        "patch_to_first_phase_s": [_round(v) for v in first_phase],
        "patch_to_ready_s": [_round(v) for v in ready],
        "results": Counter(str(r.get("result")) for r in results),
        "downtime_s": [r.get("downtimeSeconds") for r in results],
        "cpu_percent": round(cpu_percent(first, last), 1),
        "rss_mib_peak": round(max(sampler.peak_rss, last.rss_bytes) / 2**20, 1),
        "agent_requests_per_s": round(
            (agents_after["requests"] - agents_before["requests"]) / window, 1
        ),
        "apiserver_requests_per_s": requests_per_s(api_after, api_before, window),
    }


def _round(value: float, digits: int = 3) -> float | None:
    return None if math.isnan(value) else round(value, digits)


def _per_s(
    after: Counter[str], before: Counter[str], window: float, top: int = 12
) -> dict[str, float]:
    diff = after - before
    return {k: round(v / window, 2) for k, v in diff.most_common(top)}


def _route_rates(after: dict[str, Any], before: dict[str, Any], window: float) -> dict[str, float]:
    routes: Counter[str] = Counter()
    for name, machine in after["machines"].items():
        previous = before["machines"].get(name, {}).get("routes", {})
        for route, count in machine["routes"].items():
            routes[route] += count - previous.get(route, 0)
    return {k: round(v / window, 2) for k, v in routes.most_common() if v}


def run_variant(s: Setup, variant: str) -> dict[str, Any]:
    args = s.args
    say(f"--- variant {variant}: {VARIANTS[variant] or 'defaults'}")
    watch = PlacementWatch(s.api).start()
    env = operator_env(args, variant)
    shim = kopf_workers_shim(s.work) if "BERTH_BENCH_KOPF_WORKERS" in env else {}
    operator = OperatorProcess(
        s.operator_kubeconfig,
        s.tls_dir,
        s.work / f"operator-{variant}.log",
        [NAMESPACE],
        extra_env=env | shim,
    )
    try:
        started = time.monotonic()
        operator.start()
        assert operator.proc is not None
        pid = operator.proc.pid
        total: int = args.placements
        figures: dict[str, Any] = {"env": env}

        most = [0]

        def all_ready() -> bool:
            ready = watch.ready_count()
            most[0] = max(most[0], ready)
            return len(watch.objects) == total and ready == total

        api_started = apiserver_requests(s.api)

        deadline = started + args.ready_timeout
        with Sampler(pid) as sampler:
            while not watch.wait(all_ready, min(10, max(0.1, deadline - time.monotonic()))):
                if operator.proc.poll() is not None:
                    raise RuntimeError(f"the operator exited:\n{operator.log_tail()}")
                say(
                    f"  Ready {watch.ready_count()}/{total} after {time.monotonic() - started:.0f}s"
                )
                if time.monotonic() >= deadline:
                    break
        ready = all_ready()
        figures["all_ready_s"] = round(time.monotonic() - started, 2) if ready else None
        figures["ready_at_end_of_startup"] = watch.ready_count()
        figures["ready_most_during_startup"] = most[0]
        figures["apiserver_rejected_429_during_startup"] = (
            apiserver_requests(s.api) - api_started
        )[REJECTED]
        figures["phases_at_end_of_startup"] = watch.phases()
        # Placements that went through Stalled on the way (e.g. before the first heartbeat).
        figures["stalled_during_startup"] = watch.ever(
            lambda o: (o.get("status") or {}).get("phase") == "Stalled"
        )
        figures["rss_mib_startup_peak"] = round(sampler.peak_rss / 2**20, 1)
        say(
            f"  all Ready after {figures['all_ready_s']}s"
            if ready
            else f"  only {watch.ready_count()}/{total} Ready after {args.ready_timeout}s"
        )

        say(f"  settling {args.settle_seconds}s, then {args.rest_seconds}s at rest")
        time.sleep(args.settle_seconds)
        agents_before, api_before = s.sim.stats(), apiserver_requests(s.api)
        first = sample(pid)
        with Sampler(pid) as sampler:
            time.sleep(args.rest_seconds)
        last = sample(pid)
        agents_after, api_after = s.sim.stats(), apiserver_requests(s.api)
        window = last.at - first.at
        figures |= {
            "rest_window_s": round(window, 1),
            "rss_mib_rest": round(last.rss_bytes / 2**20, 1),
            "cpu_percent_rest": round(cpu_percent(first, last), 1),
            "agent_requests_per_s_rest": round(
                (agents_after["requests"] - agents_before["requests"]) / window, 1
            ),
            "agent_connections_per_s_rest": round(
                (agents_after["connections"] - agents_before["connections"]) / window, 1
            ),
            "agent_requests_by_route_per_s_rest": _route_rates(agents_after, agents_before, window),
            "apiserver_requests_per_s_rest": requests_per_s(api_after, api_before, window),
            "apiserver_rejected_429_per_s_rest": round(
                (api_after - api_before)[REJECTED] / window, 2
            ),
            "apiserver_requests_by_verb_per_s_rest": _per_s(api_after, api_before, window),
            "ready_after_rest": watch.ready_count(),
            "phases_after_rest": watch.phases(),
        }
        say(
            f"  rest: RSS {figures['rss_mib_rest']} MiB, CPU {figures['cpu_percent_rest']}%, "
            f"agents {figures['agent_requests_per_s_rest']} req/s, "
            f"API server {figures['apiserver_requests_per_s_rest']} req/s"
        )

        if watch.ready_count() < total:
            say("  not every placement is Ready: no moves measured")
            figures |= {
                "patch_to_first_phase_s": {"single": None, "median": None, "max": None},
                "patch_to_ready_s": {"single": None, "concurrent_max": None},
            }
            return figures
        say("  one isolated move")
        watch.trim()
        single = measure_moves(
            s, watch, pid, moves(watch.objects, s.machines, 1), args.move_timeout
        )
        say(f"  single: {single['patch_to_first_phase_s']} s to first phase")
        time.sleep(args.settle_seconds)

        say(f"  {args.concurrent} moves at once")
        watch.trim()
        chosen = moves(watch.objects, s.machines, args.concurrent)
        concurrent = measure_moves(s, watch, pid, chosen, args.move_timeout)
        latencies = [v for v in concurrent["patch_to_first_phase_s"] if v is not None]
        figures |= {
            "rss_mib_migrating": concurrent["rss_mib_peak"],
            "cpu_percent_migrating": concurrent["cpu_percent"],
            "agent_requests_per_s_migrating": concurrent["agent_requests_per_s"],
            "apiserver_requests_per_s_migrating": concurrent["apiserver_requests_per_s"],
            "patch_to_first_phase_s": {
                "single": single["patch_to_first_phase_s"][0],
                "median": round(statistics.median(latencies), 3) if latencies else None,
                "max": max(latencies) if len(latencies) == len(chosen) else None,
            },
            "patch_to_ready_s": {
                "single": single["patch_to_ready_s"][0],
                "concurrent_max": (
                    max(v for v in concurrent["patch_to_ready_s"] if v is not None)
                    if all(v is not None for v in concurrent["patch_to_ready_s"])
                    else None
                ),
            },
            "single_move": single,
            "concurrent_moves": concurrent,
        }
        say(
            f"  concurrent: first phase median {figures['patch_to_first_phase_s']['median']} s, "
            f"max {figures['patch_to_first_phase_s']['max']} s; all Ready on the new machines "
            f"after {figures['patch_to_ready_s']['concurrent_max']} s"
        )
        figures["operator_log_lines"] = sum(1 for _ in operator.log_path.open("rb"))
        return figures
    finally:
        operator.stop()
        watch.stop()


def summary(result: dict[str, Any], variants: list[str]) -> str:
    op = result["operator"]
    columns = {v: (op if v == variants[-1] else op[v]) for v in variants}
    lines = [
        f"operator: {op['placements']} placements, {op['machines']} machines, "
        f"{op['concurrent']} concurrent moves; poll {op['settings']['poll_seconds']}s, "
        f"heartbeat {op['settings']['heartbeat_seconds']}s, "
        f"kopf pool {op['settings']['kopf_max_workers']} threads",
        f"{'':36}" + "".join(f"{v:>12}" for v in variants),
    ]
    for label, key in OPERATOR_ROWS:
        cells = [f"{operator_figure(columns[v], key):>12}" for v in variants]
        lines.append(f"{label:36}" + "".join(cells))
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--placements", type=int, default=500)
    parser.add_argument("--machines", type=int, default=20)
    parser.add_argument("--concurrent", type=int, default=10)
    parser.add_argument("--rest-seconds", type=float, default=60)
    parser.add_argument("--settle-seconds", type=float, default=15)
    parser.add_argument("--ready-timeout", type=float, default=300)
    parser.add_argument("--move-timeout", type=float, default=300)
    parser.add_argument(
        "--variants",
        default="before,after",
        help="comma-separated, from: " + ", ".join(VARIANTS) + " (the last is the headline)",
    )
    parser.add_argument(
        "--kopf-workers",
        type=int,
        default=-1,
        help="the operator's kopf thread pool: at least this many threads; default (-1): "
        "placements + machines + 64; 0: berth's own 64, fewer than one per placement "
        "(see KOPF_WORKERS_SHIM)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the work dir (logs)")
    parser.add_argument("--output", type=Path, default=RESULTS / "operator_scale.json")
    args = parser.parse_args()
    variants = [v for v in args.variants.split(",") if v]
    if not variants or any(v not in VARIANTS for v in variants):
        parser.error(f"--variants: choose from {', '.join(VARIANTS)}")
    if args.machines < 2 or args.placements < args.machines + args.concurrent:
        parser.error("need at least 2 machines and more placements than machines + concurrent")

    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _interrupt)
    work = Path(tempfile.mkdtemp(prefix="berth-operator-scale-"))
    defaults = OperatorConfig()
    result: dict[str, Any] = {
        "operator": {
            "placements": args.placements,
            "machines": args.machines,
            "concurrent": args.concurrent,
            "settings": {
                "poll_seconds": defaults.poll_seconds,
                "heartbeat_seconds": defaults.heartbeat_seconds,
                "cluster_max_migrations": max(args.concurrent, defaults.cluster_max_migrations),
                "kopf_max_workers": kopf_workers(args),
                "variants": {v: VARIANTS[v] for v in variants},
            },
        }
    }
    failed = True
    try:
        with contextlib.ExitStack() as stack:
            s = setup(args, stack, work)
            where = {i: s.machines[i % args.machines] for i in range(args.placements)}
            for n, variant in enumerate(variants):
                if n:
                    say("  recreating the placements where their repositories run now")
                    delete_placements(s.api)
                create_placements(s.api, where)
                figures = run_variant(s, variant)
                for obj in checked(s.api.get(PLACEMENTS_PATH))["items"]:
                    index = int(obj["metadata"]["name"].rsplit("-", 1)[1])
                    status = obj.get("status") or {}
                    where[index] = status.get("currentMachine") or obj["spec"]["machine"]
                if variant == variants[-1]:
                    result["operator"] |= figures
                else:
                    result["operator"][variant] = figures
        failed = False
    finally:
        if failed or args.keep:
            say(f"work dir (logs) kept: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n")
    print(summary(result, variants))
    say(f"wrote {args.output}")


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt as interrupted:  # Ctrl-C, SIGTERM, SIGHUP: all stopped by now
        say(f"interrupted ({interrupted or 'Ctrl-C'})")
        sys.exit(130)
