#!/usr/bin/env bash
# The demo: prepares this machine (idempotent), then runs berth's main job on the lab.
# Extra arguments go to `berth-lab demo` (e.g. --keep, --json FILE).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bash "$root/hack/install-host.sh"
exec "$root/.venv/bin/berth-lab" demo "$@"
