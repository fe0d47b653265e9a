"""What the migration tests share: a move driven from host-a to host-b, and a lab host's
link slowed for the length of a block."""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

from berth_lab import Lab
from berth_lab.agents import LabAgents
from berth_operator.migration.driver import MigrationDriver
from berth_operator.migration.listener import MigrationListener, Unrecorded
from berth_operator.migration.state import MigrationState, Mode


def migrate(
    lab: Lab,
    name: str,
    guid: str,
    mode: Mode = Mode.LIVE,
    *,
    memory: str = "freeze",
    listener: MigrationListener | None = None,
) -> MigrationState:
    """Move the repository from host-a to host-b with the driver, to its end."""
    state = MigrationState(
        id=f"m-{uuid.uuid4().hex[:8]}",
        repository=name,
        guid=guid,
        source="host-a",
        target="host-b",
        mode=mode,
        memory=memory,
    )
    driver = MigrationDriver(
        LabAgents(lab), lab.pki.client, listener or Unrecorded(), answer_timeout=30
    )
    return driver.run(state)


@contextmanager
def slowed(lab: Lab, host: str, rate: str) -> Iterator[None]:
    """What the lab host sends limited to rate (tc's TBF on its eth0), then unlimited."""
    ns = lab.host(host).nsenter()
    subprocess.run([*ns, "tc", "qdisc", "replace", "dev", "eth0", "root", "tbf", "rate", rate,
                    "burst", "64kb", "latency", "50ms"], check=True)  # fmt: skip
    try:
        yield
    finally:
        subprocess.run([*ns, "tc", "qdisc", "del", "dev", "eth0", "root"], check=False)
