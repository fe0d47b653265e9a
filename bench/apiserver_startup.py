"""Start-up cost of the embedded kube-apiserver (issue target: ready in under 10 s).

Starts and stops `berth_lab.kube.KubeAPIServer` a few times on fresh state and prints,
per run, the seconds until etcd is healthy, until the apiserver's /readyz says ok, and
for the stop. Run after `hack/kube/build.sh`:

    .venv/bin/python bench/apiserver_startup.py [--runs 3]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

from berth_lab.kube import KubeAPIServer

RESULTS = Path(__file__).resolve().parent / "results"


def one_run() -> dict[str, float]:
    started = time.monotonic()
    server = KubeAPIServer().start()
    ready = time.monotonic()
    assert server.times is not None
    server.stop()
    return {
        "etcd_s": server.times.etcd,
        "apiserver_s": server.times.apiserver,
        # Includes the PKI and the admin kubeconfig, i.e. what a test waits for.
        "start_s": ready - started,
        "stop_s": time.monotonic() - ready,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    runs = []
    print(f"{'run':>3} {'etcd':>7} {'apiserver':>10} {'start':>7} {'stop':>7}")
    for i in range(1, args.runs + 1):
        run = one_run()
        runs.append(run)
        print(
            f"{i:>3} {run['etcd_s']:>6.2f}s {run['apiserver_s']:>9.2f}s "
            f"{run['start_s']:>6.2f}s {run['stop_s']:>6.2f}s"
        )
    starts = [r["start_s"] for r in runs]
    print(f"start: median {statistics.median(starts):.2f}s, max {max(starts):.2f}s (target < 10 s)")
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "apiserver_startup.json").write_text(json.dumps({"runs": runs}, indent=2) + "\n")


if __name__ == "__main__":
    main()
