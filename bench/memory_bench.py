"""Memory-heavy containers moved live: their memory inside the freeze and after it
(post-copy), side by side in one run.

    .venv/bin/python bench/memory_bench.py [--sizes 0,256,1024,4096] [--dirty 0,50]
                                           [--modes freeze,auto] [--repeat 3]

For each resident size (MiB of random bytes the memory app holds, in a repository beside
pulse, which answers a prober on host-c), each dirty rate (MiB/s the app rewrites) and
each mode (`spec.memory`), the repository is placed on host-a and moved between host-a
and host-b `--repeat` times. Size 0 is pulse alone: the same move without the memory app,
the baseline the others are compared with. Measured per move: the status downtime, the
longest gap the prober saw, the whole migration (startedAt to finishedAt), the bytes sent
before and inside the freeze, postCopySeconds and the pages faulted on demand. After
every move the app's log must show the same process and only good checksums of its
whole memory. Writes bench/results/memory.json;
bench/report.py puts the table into docs/performance.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
import time
from typing import Any

from berth_agent.apps import memory, pulse
from berth_common.agent_api.services import RepositoryServices
from berth_lab import Lab
from berth_lab.kubeconfig import Kubectl
from downtime_bench import RESULTS, HostProber, cluster_lab, move, place, remove
from report import ROOT, commit_label

PORT = 19000


def say(text: str) -> None:
    print(f"[memory] {text}", flush=True)


def seconds_between(start: str, end: str) -> float:
    parse = dt.datetime.fromisoformat
    return (parse(end.replace("Z", "+00:00")) - parse(start.replace("Z", "+00:00"))).total_seconds()


def app_lines(lab: Lab, host: str, name: str) -> list[str]:
    with lab.agent(host) as agent:
        return agent.logs(name, memory.NAME, tail=10000)


def wait_for_checks(lab: Lab, host: str, name: str, more_than: int, timeout: float) -> int:
    """Wait until the app on host has logged more than more_than checks; their count."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        seen = memory.events(app_lines(lab, host, name))
        checks = sum(e.startswith(("ok ", "CORRUPT ")) for e in seen)
        if checks > more_than:
            return checks
        time.sleep(1)
    raise TimeoutError(f"{name} on host-{host}: no check past {more_than} in {timeout:.0f}s")


def one_case(
    lab: Lab, kubectl: Kubectl, mib: int, dirty: int, mode: str, repeat: int
) -> dict[str, Any]:
    name = f"mem{mib}d{dirty}{mode[:2]}"
    app = [memory.service(mib, every=2.0, dirty_mib_per_s=dirty)] if mib else []
    services = RepositoryServices(
        services=[*pulse.services(interval=0.2, host_port=PORT).services, *app]
    )
    size_gib = max(2, (mib * 3) // 1024 + 2)  # a dump of the memory, inside it, and room
    place(kubectl, name, size_gib, services)
    kubectl("patch", "-n", "bench", f"rp/{name}", "--type", "merge",
            "-p", json.dumps({"spec": {"memory": mode}}))  # fmt: skip
    checks = wait_for_checks(lab, "a", name, 0, timeout=120 + mib / 20) if mib else 0
    runs: list[dict[str, Any]] = []
    failures: list[str] = []
    here = "a"
    for _ in range(repeat):
        there = "b" if here == "a" else "a"
        addresses = [lab.host("a").address, lab.host("b").address]
        with HostProber(lab, addresses, PORT, 0.02) as prober:
            time.sleep(0.5)
            started = time.time()
            try:
                last = move(kubectl, name, f"host-{there}")
            except RuntimeError as err:  # rolled back: recorded, and it runs here again
                say(f"{mib} MiB, {dirty} MiB/s, {mode}: FAILED {err}")
                failures.append(str(err))
                kubectl("patch", "-n", "bench", f"rp/{name}", "--type", "merge",
                        "-p", json.dumps({"spec": {"machine": f"host-{here}"}}))  # fmt: skip
                time.sleep(5)
                continue
            time.sleep(0.5)
        problems: list[str] = []
        if mib:
            checks = wait_for_checks(lab, there, name, checks, timeout=120)
            problems = memory.problems(app_lines(lab, there, name))
        run = {
            "to": f"host-{there}",
            "downtime_status_s": last["downtimeSeconds"],
            "downtime_prober_s": round(prober.longest_gap(started), 3),
            "migration_s": round(seconds_between(last["startedAt"], last["finishedAt"]), 3),
            "postcopy_s": last.get("postCopySeconds"),
            "postcopy_bytes": last.get("postCopyBytes", 0),
            "postcopy_pages": last.get("postCopyPages", 0),
            "postcopy_faulted_pages": last.get("postCopyFaultedPages", 0),
            "postcopy_containers": last.get("postCopyContainers", []),
            "bulk_bytes": last["bulkBytes"],
            "delta_bytes": last["deltaBytes"],
            "step_seconds": last.get("stepSeconds", {}),
            "memory_intact": not problems,
            "problems": problems,
        }
        runs.append(run)
        say(
            f"{mib} MiB, {dirty} MiB/s, {mode}: downtime {run['downtime_status_s']:.3f}s "
            f"(prober {run['downtime_prober_s']:.3f}s), migration {run['migration_s']:.1f}s, "
            f"post-copy {run['postcopy_s']} s ({run['postcopy_faulted_pages']} of "
            f"{run['postcopy_pages']} pages faulted), delta {run['delta_bytes'] / 1e6:.1f} MB, "
            + ("memory intact" if not problems else f"PROBLEMS {problems}")
        )
        say("  steps: " + ", ".join(f"{k} {v:.3f}" for k, v in sorted(run["step_seconds"].items())))
        here = there
    remove(kubectl, name)
    return {"resident_mib": mib, "dirty_mib_s": dirty, "mode": mode, "runs": runs,
            "failures": failures}  # fmt: skip


def cases(sizes: list[int], dirty: list[int], modes: list[str]) -> list[tuple[int, int, str]]:
    """(resident MiB, dirty MiB/s, mode) to measure; pulse alone (size 0) once: without
    the memory app there is nothing to rewrite, and pulse's memory always freezes."""
    return [(0, 0, "freeze")] * (0 in sizes) + [
        (mib, rate, mode) for mib in sizes if mib for rate in dirty for mode in modes
    ]


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", default="0,256,1024,4096", help="resident MiB (0: pulse alone)")
    parser.add_argument("--dirty", default="0,50", help="MiB/s rewritten while it runs")
    parser.add_argument(
        "--modes",
        default="freeze,auto",
        help="spec.memory values (auto: post-copy for the "
        "memory app, pulse's few MiB inside the freeze)",
    )
    parser.add_argument("--repeat", type=int, default=3, help="moves per case")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    results: dict[str, Any] = {
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "commit": commit_label(ROOT),  # may differ from the rest of the suite's
        "cases": [],
    }
    datastore = f"{max(24, 3 * (max(sizes) * 3 // 1024 + 2) + 8)}G"
    RESULTS.mkdir(exist_ok=True)
    dirty_rates = [int(d) for d in args.dirty.split(",")]
    with cluster_lab(datastore) as (lab, kubectl):
        for mib, dirty, mode in cases(sizes, dirty_rates, args.modes.split(",")):
            results["cases"].append(one_case(lab, kubectl, mib, dirty, mode, args.repeat))
            # After each case: a run cut short keeps what it measured.
            (RESULTS / "memory.json").write_text(json.dumps(results, indent=2) + "\n")
    say(f"wrote {RESULTS / 'memory.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
