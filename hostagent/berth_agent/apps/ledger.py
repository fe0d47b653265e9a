"""ledger: a writer that appends numbered records to a file, fsyncs each one and only then
acknowledges it in its log. Its file must hold records 1..n with no gap after any move,
n at least the last record it acknowledged: a lost write shows as a short file, a
restarted writer (no checkpoint) as a repeat, since it goes on from the file's last line."""

from __future__ import annotations

import itertools
import re

from berth_agent.runtime.images import BUSYBOX_IMAGE
from berth_common.agent_api.services import ServiceSpec

FILE = "/ledger"
INTERVAL_S = 0.1

SCRIPT = f"""
touch {FILE}
n=$(wc -l < {FILE})
while :; do
  n=$((n + 1))
  echo "record $n" >> {FILE}
  sync {FILE}
  echo "ack $n"
  sleep "${{LEDGER_INTERVAL:-{INTERVAL_S:g}}}"
done
"""

_ACK = re.compile(r"^\S+ ack (\d+)$")


def service(interval: float = INTERVAL_S) -> ServiceSpec:
    """ledger as a checkpointed service, writing a record every `interval` seconds."""
    return ServiceSpec(
        name="ledger",
        image=BUSYBOX_IMAGE,
        command=["sh", "-c", SCRIPT],
        environment={"LEDGER_INTERVAL": f"{interval:g}"},
        checkpoint=True,
    )


def acks(lines: list[str]) -> list[int]:
    """The records acknowledged, from Docker's timestamped log lines."""
    return [int(m.group(1)) for line in lines if (m := _ACK.match(line))]


def records(text: str) -> list[int]:
    """The records in ledger's file, in file order; a last line still being written (no
    newline yet) is not a record yet."""
    return [int(line.split()[1]) for line in text.split("\n")[:-1]]


def problems(written: list[int], acked: list[int], acked_before: int = 0) -> list[str]:
    """What was lost or repeated, given the records written to the file, those its log
    acknowledged, and the last one acknowledged before a fault; none: nothing lost."""
    found = []
    if written != list(range(1, len(written) + 1)):
        found.append(f"ledger records: {runs(written)}")
    if len(written) < acked_before:
        found.append(
            f"ledger acknowledged {acked_before} records before the fault; {len(written)} survived"
        )
    if not acked:
        found.append("ledger acknowledged nothing")
    elif max(acked) > len(written):
        found.append(f"ledger acknowledged record {max(acked)}; the file ends at {len(written)}")
    return found


def runs(values: list[int]) -> str:
    """1..5, 1..3: how a sequence restarted, briefly."""
    if not values:
        return "none"
    found, start = [], values[0]
    for prev, cur in itertools.pairwise(values):
        if cur != prev + 1:
            found.append(f"{start}..{prev}")
            start = cur
    found.append(f"{start}..{values[-1]}")
    return ", ".join(found)
