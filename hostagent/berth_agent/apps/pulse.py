"""pulse: the demo application. Its counter lives only in RAM, so it survives a move
only if the process's memory does (CRIU), and restarts at 1 if it does not."""

from __future__ import annotations

import datetime as dt
import re

from berth_common.agent_api.services import PortSpec, RepositoryServices, ServiceSpec

IMAGE = "berth/pulse:1"
PORT = 8080

SCRIPT = """#!/bin/sh
# pulse: keeps a counter in memory only and logs a beat every PULSE_INTERVAL seconds.
interval="${PULSE_INTERVAL:-1}"
port="${PULSE_PORT:-8080}"
# Answer TCP probes so a mover can tell when the service is back.
nc -ll -p "$port" -e /usr/bin/pulse-answer &
n=0
while :; do
  n=$((n + 1))
  echo "memory counter=$n time=$(date -u +%Y-%m-%dT%H:%M:%SZ)"
  sleep "$interval"
done
"""

# Greets, then echoes each line: a probe reads the greeting and hangs up; a client that
# holds its connection (berth_lab.holder) gets every request back on it, across moves.
ANSWER = """#!/bin/sh
echo "pulse $(hostname)"
while read -r line; do echo "$line"; done
"""


def services(interval: float = 1.0, host_port: int = PORT) -> RepositoryServices:
    return RepositoryServices(
        services=[
            ServiceSpec(
                name="pulse",
                image=IMAGE,
                command=["/usr/bin/pulse"],
                environment={"PULSE_INTERVAL": f"{interval:g}", "PULSE_PORT": str(PORT)},
                checkpoint=True,
                ports=[PortSpec(container=PORT, host=host_port)],
            )
        ]
    )


# --- reading pulse's heartbeat from Docker's timestamped log lines -------------------
_BEAT = re.compile(r"^(\S+) memory counter=(\d+) ")


def beats(lines: list[str]) -> list[tuple[dt.datetime, int]]:
    """(docker timestamp, counter) for each heartbeat line."""
    found = []
    for line in lines:
        match = _BEAT.match(line)
        if match:
            stamp = match.group(1)[:26].rstrip("Z")  # ns -> us for fromisoformat
            found.append((dt.datetime.fromisoformat(stamp), int(match.group(2))))
    return found


def counters(lines: list[str]) -> list[int]:
    return [counter for _, counter in beats(lines)]
