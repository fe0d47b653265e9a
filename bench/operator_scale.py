"""The operator at scale (issue 21): two operator designs, side by side, at several scales.

    .venv/bin/python bench/operator_scale.py [--scales 500x20,5000x100] [--concurrent 10,50]
        [--designs baseline,current] [--baseline-ref 428078f] [--current-dir DIR]

Issue 21's targets, for 5,000 placements on 100 machines: at rest, at most 1 API request
per second beyond the Machines' heartbeat writes, at most 2 % of a core and an RSS of at
most 400 MiB; every placement Ready within 60 s of the operator's start; 50 concurrent
moves within the per-machine and cluster limits, patch to first phase p99 at most 1 s.

Designs: `baseline` is the operator at `--baseline-ref` (default 428078f: one kopf daemon
thread per placement, polling), run from a temporary `git worktree add --detach` of that
ref (removed at the end, also on an error or Ctrl-C); `current` is the operator of
`--current-dir` (default: the tree this script is in). Each runs as `berth-operator run`
(`berth_lab.cluster.OperatorProcess`, as the chart's ServiceAccount) with its tree's
package source dirs (pyproject.toml's `where`) first on PYTHONPATH, so each runs its own
code whatever the virtualenv's editable install points at; before its runs, the design's
own CRDs and the chart's RBAC (helm template of its chart) are applied. Both commits are
recorded. The baseline also gets a sitecustomize shim on its PYTHONPATH that raises kopf's
thread pool to at least placements + machines + 64 (`--kopf-workers`): its daemons hold
one thread each for good, and a smaller pool never starts the rest. `current` gets no
shim. The intervals are each design's own defaults (its `OperatorConfig`, read in a
subprocess with its PYTHONPATH; 10 s heartbeat, 5 s poll if unreadable), set explicitly
(BERTH_HEARTBEAT_SECONDS, BERTH_POLL_SECONDS) because OperatorProcess sets the lab's fast
ones; BERTH_CLUSTER_MAX_MIGRATIONS is the scale's concurrent moves; `--design-env
current:KEY=VALUE` adds more (e.g. BERTH_WORKERS).

One real kube-apiserver + etcd (`berth_lab.kube.KubeAPIServer`) serves every run. Per
scale (`--scales PxM`: P placements on M machines) and design, in that order, each run
starts alike: a fresh `bench/simagent.py` (every machine's agent in one process, mTLS,
repositories in memory, small sleeps), a fresh Machine per simulated machine (no status:
the operator's heartbeats make them Ready; `maxConcurrentMigrations` = ceil(2 x
concurrent / M)), P placements (placement i on machine i mod M, its repository already
running there), then the operator. Measured, from a watch on the placements and the API
server's apiserver_request_total:

- all_ready_s: from the operator's start until every placement is Ready (spec.machine
  current, no migration, Ready=True); a run that does not get there within
  `--ready-timeout` reports how many were Ready then;
- at rest (`--rest-seconds` after `--settle-seconds`): the operator's RSS
  (/proc/PID/status) and CPU (utime+stime over the window, % of one core); the API
  server's requests per second split into the Machines' heartbeat writes (PATCH, PUT or
  APPLY of machines/status) and everything else ("beyond heartbeats"), both less the
  server's background (its own leases, the bench's watch and scrapes), measured once for
  `--idle-seconds` with no operator running; the simulated agents' requests per second;
- one isolated move, then `--concurrent` moves at once (spec.machine patched; sources and
  targets spread evenly): patch to first phase (the first status that shows the operator
  acting: status.migration set, or the new generation observed with a phase other than
  Placed) p50/p99/max, patch to Ready on the new machine, the most placements in a
  migration (status.migration not ended, or a migration phase) at once per machine and
  cluster-wide, from every watch event, against the limits; the operator's RSS and CPU.

A run never takes much longer than `--run-budget` seconds after its operator starts
(default 270: ready timeout 150, then rest and moves in what is left); its moves are
measured among the Ready placements even if not all got there (then flagged). Measured
on this 2-core machine (--designs baseline): 500x20 2.3 minutes, 5000x100 6.5 with a
300 s budget (setup 14 s, stopping the operator 20 s, removing 5,000 placements 41 s); the
whole default run (both designs) takes about 20 minutes. A run that fails is recorded
with its error and the next one goes on.

Writes bench/results/operator_scale.json (`operator`: `designs` with their commits,
`scales`, `background_apiserver_per_s`, `runs[]`, one per design and scale, and
`targets`: issue 21's for current at the largest scale, from bench/report.py) and prints
the table docs/performance.md shows. Everything it starts (operators, simulated agents,
API server, the baseline's worktree, the work dir unless `--keep` or a failure) is
stopped or removed at the end, also on Ctrl-C or SIGTERM. Run as root after
`hack/kube/build.sh`, under `flock /tmp/berth-lab.lock` when others run the lab's tests or
benchmarks on the same machine.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import math
import os
import shutil
import signal
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import tomllib
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

import httpx
import yaml

from berth_api.v1alpha1 import GROUP, VERSION
from berth_common.pki import CertFiles, create_ca, issue
from berth_lab.cluster import OPERATOR_NAMESPACE, PEERING, RELEASE, OperatorProcess, chart_rbac
from berth_lab.kube import KubeAPIServer
from berth_lab.kubeconfig import Kubectl, service_account_kubeconfig
from report import operator_section, operator_targets

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
RESULTS = BENCH / "results"
NAMESPACE = "berth-bench"
PLACEMENTS_PATH = f"/apis/{GROUP}/{VERSION}/namespaces/{NAMESPACE}/repositoryplacements"
MACHINES_PATH = f"/apis/{GROUP}/{VERSION}/machines"
CLIENT_CN = "berth-operator"
CLK_TCK = os.sysconf("SC_CLK_TCK")
REJECTED = "rejected (429)"
DESIGNS = ("baseline", "current")
BASELINE_REF = "428078f"  # one kopf daemon thread per placement, polling every 5 s
# When a design's OperatorConfig cannot be read: the baseline's defaults.
FALLBACK_DEFAULTS: dict[str, float] = {"heartbeat_seconds": 10, "poll_seconds": 5}
DEFAULTS_PROBE = """\
import json, berth_operator
from berth_operator.config import OperatorConfig
print(json.dumps({"module": berth_operator.__file__,
                  "defaults": OperatorConfig().model_dump(mode="json")}))
"""
MIGRATING_PHASES = {"Pending", "Preparing", "BulkSync", "Cutover", "Verifying", "PostCopy"}
MIGRATING_PHASES |= {"Finalizing"}
TERMINAL_PHASES = {"Succeeded", "Failed", "RolledBack"}
SETTLED_PHASES = {None, "Placed"}
HEARTBEAT_VERBS = {"PATCH", "PUT", "APPLY"}
CLIENTS = 8  # the bench's own parallel requests when it creates and deletes objects


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
        with log.open("ab") as err:
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
            base_url=f"http://127.0.0.1:{ready['control']}", trust_env=False, timeout=30
        )

    def stats(self) -> dict[str, Any]:
        stats: dict[str, Any] = self._control.get("/stats").json()
        return stats

    def stop(self) -> None:
        if hasattr(self, "_control"):
            self._control.close()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


# --- the designs -----------------------------------------------------------------------
def git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(repo), *args], check=True, capture_output=True, text=True
    ).stdout.strip()


@dataclass
class Design:
    name: str
    tree: Path
    commit: str
    ref: str | None = None
    dirty: bool = False
    defaults: dict[str, Any] = field(default_factory=dict)
    module: str = ""  # where its berth_operator was imported from

    def package_dirs(self) -> list[Path]:
        """pyproject.toml's [tool.setuptools.packages.find] where, in this tree."""
        project = tomllib.loads((self.tree / "pyproject.toml").read_text())
        where: list[str] = project["tool"]["setuptools"]["packages"]["find"]["where"]
        return [self.tree / w for w in where]

    def pythonpath(self, first: list[Path] | None = None) -> str:
        paths = [str(p) for p in [*(first or []), *self.package_dirs()]]
        if os.environ.get("PYTHONPATH"):
            paths.append(os.environ["PYTHONPATH"])
        return os.pathsep.join(paths)

    def probe(self) -> None:
        """The design's OperatorConfig defaults, read with its own PYTHONPATH."""
        env = {**os.environ, "PYTHONPATH": self.pythonpath()}
        done = subprocess.run(
            [sys.executable, "-c", DEFAULTS_PROBE],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        if done.returncode != 0:
            say(f"  {self.name}: its OperatorConfig not read ({done.stderr.strip()[-300:]})")
            self.defaults = dict(FALLBACK_DEFAULTS)
            return
        probed = json.loads(done.stdout.strip().splitlines()[-1])
        self.module = probed["module"]
        if not Path(self.module).resolve().is_relative_to(self.tree.resolve()):
            raise RuntimeError(f"{self.name} imports berth_operator from {self.module}")
        self.defaults = probed["defaults"]

    def interval(self, name: str) -> float:
        value = self.defaults.get(name, FALLBACK_DEFAULTS[name])
        return float(value)

    def wire(self) -> dict[str, Any]:
        return {
            "commit": self.commit + ("+dirty" if self.dirty else ""),
            "ref": self.ref,
            "tree": str(self.tree),
            "heartbeat_seconds": self.interval("heartbeat_seconds"),
            "poll_seconds": self.interval("poll_seconds"),
        }


def current_design(tree: Path) -> Design:
    design = Design("current", tree, git(tree, "rev-parse", "HEAD"))
    dirs = [str(p.relative_to(tree)) for p in design.package_dirs()]
    design.dirty = bool(git(tree, "status", "--porcelain", "--", *dirs, "crds", "charts"))
    return design


@contextlib.contextmanager
def baseline_design(repo: Path, ref: str) -> Iterator[Design]:
    """A detached worktree of `ref`, removed when done."""
    commit = git(repo, "rev-parse", "--verify", f"{ref}^{{commit}}")
    parent = Path(tempfile.mkdtemp(prefix="berth-baseline-"))
    tree = parent / "tree"
    try:
        git(repo, "worktree", "add", "--detach", "--quiet", str(tree), commit)
        say(f"baseline {ref} ({commit[:12]}) checked out in {tree}")
        yield Design("baseline", tree, commit, ref=ref)
    finally:
        subprocess.run(
            ["git", "-C", str(repo), "worktree", "remove", "--force", str(tree)],
            capture_output=True,
            check=False,
        )
        shutil.rmtree(parent, ignore_errors=True)
        subprocess.run(["git", "-C", str(repo), "worktree", "prune"], check=False)


def apply_manifests(kubectl: Kubectl, design: Design) -> None:
    """The design's CRDs (server-side, as install_crds), the peering (emptied), and its
    chart's RBAC."""
    paths = sorted((design.tree / "crds").glob("*.yaml"))
    paths += sorted((design.tree / "lab" / "berth_lab" / "crds").glob("*.yaml"))
    for path in paths:
        docs = [d for d in yaml.safe_load_all(path.read_text()) if d]
        crds = [d for d in docs if d["kind"] == "CustomResourceDefinition"]
        kubectl.apply(crds, "--server-side", "--force-conflicts")
        for crd in crds:
            name = f"crd/{crd['metadata']['name']}"
            kubectl("wait", "--for=condition=Established", "--timeout=30s", name)
    # Afresh: a peer the last run's operator left behind would hold the next one back.
    kubectl("delete", "clusterkopfpeering", PEERING, "--ignore-not-found", "--wait")
    peering = {"apiVersion": "kopf.dev/v1", "kind": "ClusterKopfPeering"}
    kubectl.apply({**peering, "metadata": {"name": PEERING}}, "--server-side", "--force-conflicts")
    kubectl.apply(chart_rbac(design.tree / "charts" / "berth"))


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


def in_parallel(kube: KubeAPIServer, calls: list[Callable[[httpx.Client], Any]]) -> None:
    """Each call with an admin client of its thread's own, CLIENTS at a time."""
    local, clients, lock = threading.local(), [], threading.Lock()

    def run(call: Callable[[httpx.Client], Any]) -> Any:
        client = getattr(local, "client", None)
        if client is None:
            client = local.client = admin_client(kube)
            with lock:
                clients.append(client)
        return call(client)

    try:
        with ThreadPoolExecutor(CLIENTS) as pool:
            list(pool.map(run, calls))
    finally:
        for client in clients:
            client.close()


def apiserver_requests(api: httpx.Client) -> Counter[str]:
    """apiserver_request_total summed per 'VERB resource[/subresource]' (all clients); the
    requests it turned away with 429 Too Many Requests (API Priority and Fairness) also
    under REJECTED."""
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


def is_heartbeat(key: str) -> bool:
    """A Machine's status write: what issue 21's budget leaves out."""
    verb, _, resource = key.partition(" ")
    return verb in HEARTBEAT_VERBS and resource == "machines/status"


def background_rates(after: Counter[str], before: Counter[str], window: float) -> dict[str, float]:
    diff = after - before
    diff.pop(REJECTED, None)
    return {k: v / window for k, v in diff.most_common()}


def api_rates(
    after: Counter[str],
    before: Counter[str],
    window: float,
    background: dict[str, float],
    bench: Counter[str] | None = None,
) -> dict[str, Any]:
    """The API server's requests per second in a window: all it served (`served_per_s`),
    and the operator's (less the background per request kind and the bench's own
    requests in the window, e.g. its patches of spec.machine), split into heartbeat
    writes and everything beyond them."""
    diff = after - before
    rejected = diff.pop(REJECTED, 0)
    sent = bench if bench is not None else Counter()
    own: dict[str, float] = {}
    for key, count in diff.items():
        beyond_background = count - background.get(key, 0.0) * window - sent[key]
        if beyond_background > 0:
            own[key] = beyond_background
    heartbeats = sum(v for k, v in own.items() if is_heartbeat(k))
    total = sum(own.values())
    return {
        "served_per_s": round(sum(diff.values()) / window, 2),
        "operator_per_s": round(total / window, 2),
        "heartbeat_writes_per_s": round(heartbeats / window, 2),
        "beyond_heartbeats_per_s": round((total - heartbeats) / window, 2),
        "rejected_429_per_s": round(rejected / window, 2),
        "by_request_per_s": {
            k: round(v / window, 2)
            for k, v in sorted(own.items(), key=lambda kv: -kv[1])[:16]
            if v / window >= 0.005
        },
    }


# --- the placements, as the bench watches them -------------------------------------------
def is_ready(obj: dict[str, Any]) -> bool:
    status = obj.get("status") or {}
    if status.get("observedGeneration") != obj["metadata"].get("generation"):
        return False
    if status.get("currentMachine") != obj["spec"]["machine"] or status.get("migration"):
        return False
    conditions = status.get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


def acting(obj: dict[str, Any], generation: int) -> bool:
    """The operator shows it acts on the change to `generation`: a migration in status,
    or that generation observed with a phase other than a settled one."""
    status = obj.get("status") or {}
    if status.get("migration"):
        return True
    observed = status.get("observedGeneration")
    return (
        isinstance(observed, int)
        and observed >= generation
        and (status.get("phase") not in SETTLED_PHASES)
    )


def acting_on(generation: int, obj: dict[str, Any]) -> bool:
    return acting(obj, generation)


def migrating(obj: dict[str, Any]) -> tuple[str, str] | None:
    """(source, target) while the placement is in a migration, else None."""
    status = obj.get("status") or {}
    migration = status.get("migration")
    if isinstance(migration, dict) and migration.get("phase") not in TERMINAL_PHASES:
        source, target = migration.get("source"), migration.get("target")
        if source and target:
            return str(source), str(target)
    if status.get("phase") in MIGRATING_PHASES:
        return str(status.get("currentMachine")), str(obj["spec"]["machine"])
    return None


class PlacementWatch:
    """A watch on the bench's placements: the latest of each, which are Ready, the most
    in a migration at once (per machine and cluster-wide), and the events of the
    placements being moved."""

    def __init__(self, api: httpx.Client) -> None:
        self.api = api
        self.objects: dict[str, dict[str, Any]] = {}
        self.ready: set[str] = set()
        self.stalled: set[str] = set()  # went through Stalled since reset()
        self.moving: dict[str, tuple[str, str]] = {}
        self.per_machine: Counter[str] = Counter()  # in a migration now, source or target
        self.peak_cluster = 0
        self.peak_machine = 0
        self.events: list[tuple[float, str, dict[str, Any]]] = []  # (monotonic, name, obj)
        self.tracked: set[str] = set()
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
            self.objects, self.ready, self.moving = {}, set(), {}
            self.per_machine = Counter()
            for obj in listed["items"]:
                self._update(obj["metadata"]["name"], obj)
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
            self._update(name, None if kind == "DELETED" else obj)
            if obj is not None and name in self.tracked:
                self.events.append((at, name, obj))
            self.changed.notify_all()

    def _update(self, name: str, obj: dict[str, Any] | None) -> None:
        """With the lock held: one placement's latest, and what follows from it."""
        if obj is None:
            self.objects.pop(name, None)
        else:
            self.objects[name] = obj
        self.ready.discard(name)
        if obj is not None and is_ready(obj):
            self.ready.add(name)
        if obj is not None and (obj.get("status") or {}).get("phase") == "Stalled":
            self.stalled.add(name)
        before = self.moving.pop(name, None)
        now = migrating(obj) if obj is not None else None
        if before is not None:
            self.per_machine.subtract(set(before))
        if now is not None:
            self.moving[name] = now
            self.per_machine.update(set(now))
            self.peak_cluster = max(self.peak_cluster, len(self.moving))
            self.peak_machine = max(self.peak_machine, *(self.per_machine[m] for m in now))

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
        return len(self.ready)

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

    def track(self, names: list[str]) -> None:
        """Keep the events of these placements from now on (and only theirs); count the
        most in a migration at once afresh."""
        with self.lock:
            self.events.clear()
            self.tracked = set(names)
            self.peak_cluster = len(self.moving)
            self.peak_machine = max(self.per_machine.values(), default=0)

    def first(self, name: str, since: float, test: Callable[[dict[str, Any]], bool]) -> float:
        """Seconds from `since` to the first tracked event of `name` that passes test."""
        with self.lock:
            for at, event_name, obj in self.events:
                if at >= since and event_name == name and test(obj):
                    return at - since
        return math.nan

    def ever(self, name: str, test: Callable[[dict[str, Any]], bool]) -> bool:
        with self.lock:
            return any(n == name and test(obj) for _at, n, obj in self.events)


# --- the run ---------------------------------------------------------------------------
class Interrupted(KeyboardInterrupt):
    pass


def _interrupt(signum: int, _frame: FrameType | None) -> None:
    raise Interrupted(f"signal {signum}")


@dataclass(frozen=True)
class Scale:
    placements: int
    machines: int
    concurrent: int

    @property
    def label(self) -> str:
        return f"{self.placements}x{self.machines}"

    @property
    def machine_names(self) -> list[str]:
        return [f"sim-{m:03d}" for m in range(self.machines)]

    @property
    def per_machine_limit(self) -> int:
        """Each machine is source or target of at most this many of the concurrent moves."""
        return max(1, math.ceil(2 * self.concurrent / self.machines))

    @property
    def cluster_limit(self) -> int:
        return self.concurrent


@dataclass
class Cluster:
    kube: KubeAPIServer
    kubectl: Kubectl
    api: httpx.Client
    operator_kubeconfig: Path
    tls_dir: Path
    ca: CertFiles
    work: Path
    background: dict[str, float] = field(default_factory=dict)


def placement_name(i: int) -> str:
    return f"rp-{i:05d}"


def repository_name(i: int) -> str:
    return f"repo-{i:05d}"


def setup_cluster(stack: contextlib.ExitStack, work: Path, first: Design) -> Cluster:
    say("starting kube-apiserver + etcd")
    kube = KubeAPIServer(work / "kube", keep_state=False).start()
    stack.callback(kube.stop)
    kubectl = kube.kubectl()
    kubectl("create", "namespace", OPERATOR_NAMESPACE)
    kubectl("create", "namespace", NAMESPACE)
    apply_manifests(kubectl, first)
    operator_kubeconfig = service_account_kubeconfig(
        kubectl, OPERATOR_NAMESPACE, RELEASE, work / "operator.kubeconfig", duration="24h"
    )
    pki = work / "pki"
    ca = create_ca(CertFiles(pki / "ca.crt", pki / "ca.key"), cn="berth bench CA")
    tls_dir = work / "operator-tls"
    issue(ca, CertFiles(tls_dir / "tls.crt", tls_dir / "tls.key"), CLIENT_CN)
    shutil.copyfile(ca.cert, tls_dir / "ca.crt")
    api = admin_client(kube)
    stack.callback(api.close)
    return Cluster(kube, kubectl, api, operator_kubeconfig, tls_dir, ca, work)


def start_agents(cluster: Cluster, scale: Scale, log: Path) -> SimAgents:
    """A fresh simagent with every machine of the scale; placement i's repository on
    machine i mod M, running."""
    pki, machines = cluster.work / "pki", []
    for m, name in enumerate(scale.machine_names):
        served = CertFiles(pki / f"{name}.crt", pki / f"{name}.key")
        if not served.cert.exists():
            issue(cluster.ca, served, name, ips=("127.0.0.1",))
        held = [repository_name(i) for i in range(scale.placements) if i % scale.machines == m]
        machines.append(
            {"name": name, "cert": str(served.cert), "key": str(served.key), "repositories": held}
        )
    spec = cluster.work / f"simagents-{scale.label}.json"
    spec.write_text(
        json.dumps({"ca": str(cluster.ca.cert), "client_cn": CLIENT_CN, "machines": machines})
    )
    return SimAgents(spec, log)


def create_machines(cluster: Cluster, scale: Scale, sim: SimAgents) -> None:
    ca_pem = cluster.ca.cert.read_text()

    def create(name: str) -> Callable[[httpx.Client], Any]:
        spec = {
            "endpoint": f"https://127.0.0.1:{sim.ports[name]}",
            "caBundle": ca_pem,
            "maxConcurrentMigrations": scale.per_machine_limit,
        }
        body = {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "Machine",
            "metadata": {"name": name},
            "spec": spec,
        }
        return lambda api: checked(api.post(MACHINES_PATH, json=body))

    in_parallel(cluster.kube, [create(name) for name in scale.machine_names])


def create_placements(cluster: Cluster, scale: Scale) -> None:
    def create(i: int) -> Callable[[httpx.Client], Any]:
        body = {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "RepositoryPlacement",
            "metadata": {"name": placement_name(i), "namespace": NAMESPACE},
            "spec": {
                "repository": repository_name(i),
                "machine": scale.machine_names[i % scale.machines],
            },
        }
        return lambda api: checked(api.post(PLACEMENTS_PATH, json=body))

    in_parallel(cluster.kube, [create(i) for i in range(scale.placements)])


def delete_all(cluster: Cluster, path: str) -> None:
    """With the operator stopped: drop kopf's finalizers, delete, wait until gone."""

    def unfinalize(name: str) -> Callable[[httpx.Client], Any]:
        return lambda api: checked(
            api.patch(
                f"{path}/{name}",
                json={"metadata": {"finalizers": None}},
                headers={"Content-Type": "application/merge-patch+json"},
            )
        )

    held = [
        obj["metadata"]["name"]
        for obj in checked(cluster.api.get(path))["items"]
        if obj["metadata"].get("finalizers")
    ]
    in_parallel(cluster.kube, [unfinalize(name) for name in held])
    checked(cluster.api.delete(path))
    deadline = time.monotonic() + 120
    while checked(cluster.api.get(f"{path}?limit=1"))["items"]:
        if time.monotonic() > deadline:
            raise RuntimeError(f"{path}: not deleted after 120 s")
        time.sleep(0.5)


def measure_background(cluster: Cluster, seconds: float) -> dict[str, float]:
    """The API server's requests with no operator running: its own, the bench's watch
    and scrapes. Subtracted from every window, request kind by request kind."""
    say(f"the API server's background: {seconds:.0f}s with no operator")
    watch = PlacementWatch(cluster.api).start()
    try:
        before, started = apiserver_requests(cluster.api), time.monotonic()
        time.sleep(seconds)
        after = apiserver_requests(cluster.api)
        return background_rates(after, before, time.monotonic() - started)
    finally:
        watch.stop()


KOPF_WORKERS_SHIM = """\
\"\"\"Written by bench/operator_scale.py for the baseline: kopf's pool has at least N
threads (BERTH_BENCH_KOPF_WORKERS), one per placement's daemon and room for the rest.\"\"\"

import os

import kopf._cogs.configs.configuration as configuration

_WORKERS = int(os.environ["BERTH_BENCH_KOPF_WORKERS"])
_max_workers = configuration.ExecutionSettings.max_workers


def _at_least(self, value):
    _max_workers.fset(self, max(value, _WORKERS))


configuration.ExecutionSettings.max_workers = _max_workers.setter(_at_least)
"""


def kopf_workers(args: argparse.Namespace, scale: Scale) -> int:
    """The baseline's kopf pool: one thread per placement (each one's daemon holds one for
    good) plus room for the heartbeats and event handlers."""
    if args.kopf_workers > 0:
        return int(args.kopf_workers)
    return scale.placements + scale.machines + 64


def operator_env(
    cluster: Cluster, design: Design, scale: Scale, args: argparse.Namespace
) -> dict[str, str]:
    env = {
        # OperatorProcess sets the lab's fast intervals; the bench measures the design's own.
        "BERTH_HEARTBEAT_SECONDS": f"{design.interval('heartbeat_seconds'):g}",
        "BERTH_POLL_SECONDS": f"{design.interval('poll_seconds'):g}",
        "BERTH_CLUSTER_MAX_MIGRATIONS": str(scale.cluster_limit),
    }
    shim: list[Path] = []
    if design.name == "baseline":
        env["BERTH_BENCH_KOPF_WORKERS"] = str(kopf_workers(args, scale))
        shim_dir = cluster.work / "kopf-workers"
        shim_dir.mkdir(exist_ok=True)
        (shim_dir / "sitecustomize.py").write_text(KOPF_WORKERS_SHIM)
        shim.append(shim_dir)
    for item in args.design_env:
        name, _, assignment = item.partition(":")
        key, _, value = assignment.partition("=")
        if name == design.name:
            env[key] = value
    return env | {"PYTHONPATH": design.pythonpath(first=shim)}


def moves(
    objects: dict[str, dict[str, Any]], ready: set[str], machines: list[str], count: int
) -> list[tuple[str, str, str]]:
    """`count` (placement, source, target) among the Ready placements, with sources and
    targets spread evenly."""
    by_machine: dict[str, list[str]] = {m: [] for m in machines}
    for name in sorted(ready):
        by_machine[objects[name]["spec"]["machine"]].append(name)
    chosen: list[tuple[str, str, str]] = []
    for k in range(count):
        source = machines[(2 * k) % len(machines)]
        target = machines[(2 * k + 1) % len(machines)]
        if not by_machine[source]:
            raise RuntimeError(f"no Ready placement on {source} left to move")
        chosen.append((by_machine[source].pop(0), source, target))
    return chosen


def percentile(values: list[float], q: float) -> float:
    """Linear between the closest ranks; a missing value (nan) counts as endless."""
    ordered = sorted(math.inf if math.isnan(v) else v for v in values)
    k = (len(ordered) - 1) * q
    low, high = ordered[math.floor(k)], ordered[math.ceil(k)]
    return low if low == high else low + (high - low) * (k - math.floor(k))


def _round(value: float, digits: int = 3) -> float | None:
    return None if math.isnan(value) or math.isinf(value) else round(value, digits)


def measure_moves(
    cluster: Cluster,
    sim: SimAgents,
    watch: PlacementWatch,
    pid: int,
    chosen: list[tuple[str, str, str]],
    timeout: float,
) -> dict[str, Any]:
    """Patch spec.machine of every chosen placement at once; wait until all are Ready."""
    names = [c[0] for c in chosen]
    targets = {name: target for name, _source, target in chosen}
    watch.track(names)
    agents_before, api_before = sim.stats(), apiserver_requests(cluster.api)
    patched: dict[str, float] = {}
    generations: dict[str, int] = {}
    with Sampler(pid) as sampler:
        first = sample(pid)
        for name, _source, target in chosen:
            patched[name] = time.monotonic()
            answer = checked(
                cluster.api.patch(
                    f"{PLACEMENTS_PATH}/{name}",
                    json={"spec": {"machine": target}},
                    headers={"Content-Type": "application/merge-patch+json"},
                )
            )
            generations[name] = int(answer["metadata"]["generation"])
        done = watch.wait(
            lambda: all(
                n in watch.ready and watch.objects[n]["spec"]["machine"] == targets[n]
                for n in names
            ),
            timeout,
        )
        last = sample(pid)
    agents_after, api_after = sim.stats(), apiserver_requests(cluster.api)
    window = last.at - first.at
    first_phase = [
        watch.first(n, patched[n], functools.partial(acting_on, generations[n])) for n in names
    ]
    ready = [
        watch.first(n, patched[n], lambda o: is_ready(o) and bool(o["status"].get("lastMigration")))
        for n in names
    ]
    results = [(watch.objects[n].get("status") or {}).get("lastMigration") or {} for n in names]
    moved = sum(
        n in watch.ready and watch.objects[n]["spec"]["machine"] == targets[n] for n in names
    )
    return {
        "moves": len(chosen),
        "moved": moved,
        "all_moved": done,
        "window_s": round(window, 2),
        "patch_to_first_phase_s": [_round(v) for v in first_phase],
        "patch_to_ready_s": [_round(v) for v in ready],
        "first_phase": {
            "p50": _round(percentile(first_phase, 0.5)),
            "p99": _round(percentile(first_phase, 0.99)),
            "max": _round(max(math.inf if math.isnan(v) else v for v in first_phase)),
            "missing": sum(math.isnan(v) for v in first_phase),
        },
        "ready": {
            "p50": _round(percentile(ready, 0.5)),
            "max": _round(max(math.inf if math.isnan(v) else v for v in ready)),
        },
        "waited": sum(
            watch.ever(n, lambda o: (o.get("status") or {}).get("phase") == "Waiting")
            for n in names
        ),
        "migrating_max_cluster": watch.peak_cluster,
        "migrating_max_per_machine": watch.peak_machine,
        "results": dict(Counter(str(r.get("result")) for r in results)),
        "downtime_s": [r.get("downtimeSeconds") for r in results],
        "cpu_percent": round(cpu_percent(first, last), 1),
        "rss_mib_peak": round(max(sampler.peak_rss, last.rss_bytes) / 2**20, 1),
        "agent_requests_per_s": round(
            (agents_after["requests"] - agents_before["requests"]) / window, 1
        ),
        "apiserver": api_rates(
            api_after,
            api_before,
            window,
            cluster.background,
            Counter({"PATCH repositoryplacements": len(chosen)}),
        ),
    }


def _route_rates(after: dict[str, Any], before: dict[str, Any], window: float) -> dict[str, float]:
    routes: Counter[str] = Counter()
    for name, machine in after["machines"].items():
        previous = before["machines"].get(name, {}).get("routes", {})
        for route, count in machine["routes"].items():
            routes[route] += count - previous.get(route, 0)
    return {k: round(v / window, 2) for k, v in routes.most_common() if v}


def run_design(
    cluster: Cluster, scale: Scale, design: Design, args: argparse.Namespace
) -> dict[str, Any]:
    """One design at one scale, from fresh agents, Machines and placements to their
    removal."""
    began = time.monotonic()
    tag = f"{design.name}-{scale.label}"
    say(f"--- {design.name} at {scale.label} ({scale.concurrent} concurrent moves)")
    figures: dict[str, Any] = {
        "design": design.name,
        "scale": scale.label,
        "placements": scale.placements,
        "machines": scale.machines,
        "concurrent": scale.concurrent,
        "limit_per_machine": scale.per_machine_limit,
        "limit_cluster": scale.cluster_limit,
    }
    with contextlib.ExitStack() as stack:
        apply_manifests(cluster.kubectl, design)
        sim = start_agents(cluster, scale, cluster.work / f"simagent-{tag}.log")
        stack.callback(sim.stop)
        stack.callback(delete_all, cluster, MACHINES_PATH)
        stack.callback(delete_all, cluster, PLACEMENTS_PATH)
        create_machines(cluster, scale, sim)
        create_placements(cluster, scale)
        figures["setup_s"] = round(time.monotonic() - began, 1)
        say(f"  {scale.machines} Machines, {scale.placements} placements: {figures['setup_s']}s")
        watch = PlacementWatch(cluster.api).start()
        stack.callback(watch.stop)
        env = operator_env(cluster, design, scale, args)
        figures["env"] = {k: v for k, v in env.items() if k != "PYTHONPATH"}
        operator = OperatorProcess(
            cluster.operator_kubeconfig,
            cluster.tls_dir,
            cluster.work / f"operator-{tag}.log",
            [NAMESPACE],
            extra_env=env,
        )
        try:
            measure_run(cluster, scale, sim, watch, operator, args, figures)
        except Exception as err:  # recorded; the next run goes on
            say(f"  failed: {err}")
            figures["error"] = str(err)[:2000]
        finally:
            stopping = time.monotonic()
            operator.stop()
            figures["operator_stop_s"] = round(time.monotonic() - stopping, 1)
        cleaning = time.monotonic()
    figures["teardown_s"] = round(time.monotonic() - cleaning, 1)
    figures["run_s"] = round(time.monotonic() - began, 1)
    say(f"  {design.name} at {scale.label}: {figures['run_s']}s in all")
    return figures


def measure_run(
    cluster: Cluster,
    scale: Scale,
    sim: SimAgents,
    watch: PlacementWatch,
    operator: OperatorProcess,
    args: argparse.Namespace,
    figures: dict[str, Any],
) -> None:
    total = scale.placements
    api_started = apiserver_requests(cluster.api)
    started = time.monotonic()
    operator.start()
    assert operator.proc is not None
    pid = operator.proc.pid
    budget_end = started + args.run_budget
    ready_timeout = max(
        10.0,
        min(args.ready_timeout, args.run_budget - args.settle_seconds - args.rest_seconds - 30),
    )
    most = [0]

    def all_ready() -> bool:
        most[0] = max(most[0], len(watch.ready))
        return len(watch.objects) == total and len(watch.ready) == total

    deadline = started + ready_timeout
    with Sampler(pid) as sampler:
        first = sample(pid)
        while not watch.wait(all_ready, min(10, max(0.1, deadline - time.monotonic()))):
            if operator.proc.poll() is not None:
                raise RuntimeError(f"the operator exited:\n{operator.log_tail()}")
            say(f"  Ready {watch.ready_count()}/{total} after {time.monotonic() - started:.0f}s")
            if time.monotonic() >= deadline:
                break
        last = sample(pid)
    ready = all_ready()
    figures |= {
        "all_ready_s": round(time.monotonic() - started, 2) if ready else None,
        "ready_timeout_s": round(ready_timeout, 1),
        "ready_at_end_of_startup": watch.ready_count(),
        "ready_most_during_startup": most[0],
        "apiserver_rejected_429_during_startup": (apiserver_requests(cluster.api) - api_started)[
            REJECTED
        ],
        "phases_at_end_of_startup": watch.phases(),
        # Placements that went through Stalled on the way (e.g. before the first heartbeat).
        "stalled_during_startup": len(watch.stalled),
        "rss_mib_startup_peak": round(max(sampler.peak_rss, last.rss_bytes) / 2**20, 1),
        "cpu_percent_startup": round(cpu_percent(first, last), 1),
    }
    say(
        f"  all Ready after {figures['all_ready_s']}s"
        if ready
        else f"  only {watch.ready_count()}/{total} Ready after {ready_timeout:.0f}s"
    )

    say(f"  settling {args.settle_seconds:g}s, then {args.rest_seconds:g}s at rest")
    time.sleep(args.settle_seconds)
    agents_before, api_before = sim.stats(), apiserver_requests(cluster.api)
    first = sample(pid)
    with Sampler(pid) as sampler:
        time.sleep(args.rest_seconds)
    last = sample(pid)
    agents_after, api_after = sim.stats(), apiserver_requests(cluster.api)
    window = last.at - first.at
    rest = api_rates(api_after, api_before, window, cluster.background)
    figures |= {
        "rest_window_s": round(window, 1),
        "rss_mib_rest": round(last.rss_bytes / 2**20, 1),
        "rss_mib_rest_peak": round(max(sampler.peak_rss, last.rss_bytes) / 2**20, 1),
        "cpu_percent_rest": round(cpu_percent(first, last), 1),
        "agent_requests_per_s_rest": round(
            (agents_after["requests"] - agents_before["requests"]) / window, 1
        ),
        "agent_connections_per_s_rest": round(
            (agents_after["connections"] - agents_before["connections"]) / window, 1
        ),
        "agent_requests_by_route_per_s_rest": _route_rates(agents_after, agents_before, window),
        "apiserver_heartbeat_writes_per_s_rest": rest["heartbeat_writes_per_s"],
        "apiserver_beyond_heartbeats_per_s_rest": rest["beyond_heartbeats_per_s"],
        "apiserver_requests_per_s_rest": rest["operator_per_s"],
        "apiserver_rejected_429_per_s_rest": rest["rejected_429_per_s"],
        "apiserver_rest": rest,
        "ready_after_rest": watch.ready_count(),
        "phases_after_rest": watch.phases(),
    }
    say(
        f"  rest: RSS {figures['rss_mib_rest']} MiB, CPU {figures['cpu_percent_rest']}%, "
        f"API server {rest['heartbeat_writes_per_s']} heartbeat writes/s + "
        f"{rest['beyond_heartbeats_per_s']} req/s beyond, "
        f"agents {figures['agent_requests_per_s_rest']} req/s"
    )

    figures["moves_with_all_ready"] = watch.ready_count() == total
    with watch.lock:
        objects, ready_names = dict(watch.objects), set(watch.ready)
    try:
        # The first alone, then the rest at once (sources and targets spread evenly).
        chosen = moves(objects, ready_names, scale.machine_names, 1 + scale.concurrent)
    except RuntimeError as err:
        say(f"  no moves measured: {err}")
        figures["moves_skipped"] = str(err)
        return
    single_timeout = min(args.move_timeout, max(20.0, (budget_end - time.monotonic()) / 3))
    say(f"  one isolated move (at most {single_timeout:.0f}s)")
    single = measure_moves(cluster, sim, watch, pid, chosen[:1], single_timeout)
    say(f"  single: {single['patch_to_first_phase_s']} s to first phase")
    time.sleep(args.settle_seconds)

    concurrent_chosen = chosen[1:]
    timeout = min(args.move_timeout, max(30.0, budget_end - time.monotonic()))
    say(f"  {scale.concurrent} moves at once (at most {timeout:.0f}s)")
    concurrent = measure_moves(cluster, sim, watch, pid, concurrent_chosen, timeout)
    latency = concurrent["first_phase"]
    within = (
        concurrent["migrating_max_per_machine"] <= scale.per_machine_limit
        and concurrent["migrating_max_cluster"] <= scale.cluster_limit
    )
    figures |= {
        "rss_mib_migrating": concurrent["rss_mib_peak"],
        "cpu_percent_migrating": concurrent["cpu_percent"],
        "agent_requests_per_s_migrating": concurrent["agent_requests_per_s"],
        "apiserver_requests_per_s_migrating": concurrent["apiserver"]["operator_per_s"],
        "patch_to_first_phase_s": {"single": single["patch_to_first_phase_s"][0], **latency},
        "patch_to_ready_s": {
            "single": single["patch_to_ready_s"][0],
            "concurrent_p50": concurrent["ready"]["p50"],
            "concurrent_max": concurrent["ready"]["max"],
        },
        "moves_done": f"{concurrent['moved']} of {concurrent['moves']}",
        "migrating_max_per_machine": concurrent["migrating_max_per_machine"],
        "migrating_max_cluster": concurrent["migrating_max_cluster"],
        "moves_within_limits": within,
        "moves_waited": concurrent["waited"],
        "single_move": single,
        "concurrent_moves": concurrent,
        "operator_log_lines": sum(1 for _ in operator.log_path.open("rb")),
    }
    say(
        f"  concurrent: first phase p50 {latency['p50']} s, p99 {latency['p99']} s, max "
        f"{latency['max']} s; {figures['moves_done']} moved, all Ready on the new machines "
        f"after {concurrent['ready']['max']} s; in a migration at once: "
        f"{figures['migrating_max_per_machine']} per machine (limit "
        f"{scale.per_machine_limit}), {figures['migrating_max_cluster']} in all (limit "
        f"{scale.cluster_limit})"
    )


def parse_scales(text: str, concurrent: str | None) -> list[Scale]:
    pairs = []
    for item in (s for s in text.split(",") if s):
        placements, _, machines = item.partition("x")
        pairs.append((int(placements), int(machines)))
    if concurrent:
        counts = [int(c) for c in concurrent.split(",") if c]
        if len(counts) == 1:
            counts *= len(pairs)
        if len(counts) != len(pairs):
            raise ValueError("--concurrent: one count, or one per scale")
    else:  # 10 at 500 placements, 50 at 5,000
        counts = [max(1, min(50, p // 50, m // 2)) for p, m in pairs]
    scales = [Scale(p, m, c) for (p, m), c in zip(pairs, counts, strict=True)]
    for s in scales:
        if s.machines < 2 or s.placements < s.machines + s.concurrent + 1:
            raise ValueError(f"{s.label}: need 2 machines and more placements than M + moves")
    return scales


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--scales", default="500x20,5000x100", help="PLACEMENTSxMACHINES,...")
    parser.add_argument(
        "--concurrent", help="moves at once, one for all scales or one per scale (10,50)"
    )
    parser.add_argument("--designs", default=",".join(DESIGNS), help="baseline, current or both")
    parser.add_argument("--baseline-ref", default=BASELINE_REF)
    parser.add_argument("--current-dir", type=Path, default=REPO, help="the current design's tree")
    parser.add_argument(
        "--design-env",
        action="append",
        default=[],
        metavar="DESIGN:KEY=VALUE",
        help="an environment variable for one design's operator (repeatable)",
    )
    parser.add_argument("--rest-seconds", type=float, default=60)
    parser.add_argument("--settle-seconds", type=float, default=15)
    parser.add_argument("--idle-seconds", type=float, default=20)
    parser.add_argument("--ready-timeout", type=float, default=150)
    parser.add_argument("--move-timeout", type=float, default=120)
    parser.add_argument(
        "--run-budget", type=float, default=270, help="seconds a run may take after its start"
    )
    parser.add_argument(
        "--kopf-workers",
        type=int,
        default=0,
        help="the baseline's kopf pool, at least; 0: placements + machines + 64",
    )
    parser.add_argument("--keep", action="store_true", help="keep the work dir (logs)")
    parser.add_argument("--output", type=Path, default=RESULTS / "operator_scale.json")
    args = parser.parse_args()
    designs = [d for d in args.designs.split(",") if d]
    if not designs or any(d not in DESIGNS for d in designs):
        parser.error(f"--designs: from {', '.join(DESIGNS)}")
    try:
        scales = parse_scales(args.scales, args.concurrent)
    except ValueError as err:
        parser.error(str(err))
    if any(":" not in e or "=" not in e for e in args.design_env):
        parser.error("--design-env DESIGN:KEY=VALUE")

    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _interrupt)
    work = Path(tempfile.mkdtemp(prefix="berth-operator-scale-"))
    current_dir = args.current_dir.resolve()
    result: dict[str, Any] = {
        "operator": {
            "format": 2,
            "designs": {},
            "scales": [s.label for s in scales],
            "runs": [],
        }
    }
    operator = result["operator"]
    began = time.monotonic()
    failed = True
    try:
        with contextlib.ExitStack() as stack:
            chosen: list[Design] = []
            if "baseline" in designs:
                chosen.append(stack.enter_context(baseline_design(current_dir, args.baseline_ref)))
            if "current" in designs:
                chosen.append(current_design(current_dir))
            for design in chosen:
                design.probe()
                operator["designs"][design.name] = design.wire()
                say(f"{design.name}: {design.wire()}")
            cluster = setup_cluster(stack, work, chosen[-1])
            cluster.background = measure_background(cluster, args.idle_seconds)
            operator["background_apiserver_per_s"] = {
                k: round(v, 3) for k, v in cluster.background.items()
            }
            for scale in scales:
                for design in chosen:
                    operator["runs"].append(run_design(cluster, scale, design, args))
                    args.output.parent.mkdir(parents=True, exist_ok=True)
                    args.output.write_text(json.dumps(result, indent=2) + "\n")  # so far
        failed = False
    finally:
        if failed or args.keep:
            say(f"work dir (logs) kept: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    operator["elapsed_s"] = round(time.monotonic() - began, 1)
    operator["targets"] = operator_targets(operator)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n")
    print("\n".join(operator_section(operator)))
    say(f"wrote {args.output}")


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt as interrupted:  # Ctrl-C, SIGTERM, SIGHUP: all stopped by now
        say(f"interrupted ({interrupted or 'Ctrl-C'})")
        sys.exit(130)
