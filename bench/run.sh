#!/usr/bin/env bash
# The benchmark suite: every figure measured side by side in one run, on the lab.
# Stamps the run (commit, UTC date, machine), writes bench/results/{databases,downtime,
# memory,operator_scale,transfer}.json, then bench/report.py keeps the figures:
# docs/performance.md with its plots in docs/performance/, and bench/results/latest.json (commit those three).
# Root, after hack/install-host.sh.
#   bash bench/run.sh            # the full suite (about 55 minutes; operator_scale.py 20)
#   bash bench/run.sh --quick    # 1 and 2 GiB, 0 and 50 MiB, the ledger, 3 moves each
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
py="$root/.venv/bin/python"
cd "$root"
suite=full
if [ "${1:-}" = "--quick" ]; then suite=quick; fi
# An earlier run's raw figures would otherwise be reported under this run's stamp (--quick
# runs no transfer_bench.py, no memory-heavy move and no push).
rm -f bench/results/{databases,downtime,memory,operator_scale,transfer}.json
"$py" bench/report.py --stamp --suite "$suite"
if [ "$suite" = quick ]; then
  "$py" bench/downtime_bench.py --sizes 1,2 --writes 0,50 --repeat 3 --ram-mib 0 --push-mib 0
  "$py" bench/operator_scale.py --scales 100x5 --concurrent 2 --rest-seconds 30
else
  "$py" bench/downtime_bench.py
  "$py" bench/memory_bench.py
  "$py" bench/database_bench.py
  "$py" bench/operator_scale.py
  "$py" bench/transfer_bench.py
fi
"$py" bench/report.py
