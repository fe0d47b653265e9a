#!/usr/bin/env bash
# The test command: prepares this machine (idempotent), then lint, types and every test.
# Extra arguments go to pytest, e.g. `hack/test.sh -m lab`.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bash "$root/hack/install-host.sh"
cd "$root"
echo "[test] ruff"; .venv/bin/ruff check . && .venv/bin/ruff format --check .
echo "[test] mypy"; .venv/bin/mypy
echo "[test] pytest"; exec .venv/bin/pytest "$@"
