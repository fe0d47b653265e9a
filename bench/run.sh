#!/usr/bin/env bash
# The benchmark suite: every figure measured side by side in one run, on the lab.
# Writes bench/results/{downtime,operator_scale,transfer}.json, then latest.json,
# results.md and the PNG plots (bench/report.py). Root, after hack/install-host.sh.
#   bash bench/run.sh            # the full suite (about 20 minutes)
#   bash bench/run.sh --quick    # 1 and 2 GiB, 0 and 50 MiB: a few minutes
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
py="$root/.venv/bin/python"
cd "$root"
if [ "${1:-}" = "--quick" ]; then
  "$py" bench/downtime_bench.py --sizes 1,2 --writes 0,50 --ram-mib 256 --push-mib 512
  "$py" bench/operator_scale.py --placements 100 --machines 5
else
  "$py" bench/downtime_bench.py
  "$py" bench/operator_scale.py
  "$py" bench/transfer_bench.py
fi
"$py" bench/report.py
