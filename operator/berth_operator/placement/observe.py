"""What decide() is given, built from what the operator holds (pure): the Machines and
the migrations in flight from the cache, each machine's repositories from the
inventories, the retry state from status."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from berth_api.v1alpha1 import RepositoryPlacementSpec
from berth_api.v1alpha1.placement_types import RepositoryPlacementStatus
from berth_common.agent_api.models import RepositoryStatus
from berth_operator.machine.heartbeat import heartbeat_age, is_ready
from berth_operator.migration.retry import RetryView
from berth_operator.migration.state import TERMINAL
from berth_operator.placement.decide import Copy, MachineView, Observed

Listing = list[RepositoryStatus] | None  # None: the machine's agent did not answer


def machine_view(
    machine: dict[str, Any], migrations: int, stale_seconds: float, now: str
) -> MachineView:
    status = machine.get("status") or {}
    return MachineView(
        name=machine["metadata"]["name"],
        ready=is_ready(machine) and heartbeat_age(status, now) < stale_seconds,
        cordoned=bool(machine["spec"].get("cordoned")),
        migrations=migrations,
        max_migrations=int(machine["spec"].get("maxConcurrentMigrations", 1)),
    )


def copies_of(repository: str, listings: Mapping[str, Listing]) -> tuple[list[Copy], list[str]]:
    """The copies of repository found, and the machines whose listing is unknown."""
    copies, unknown = [], []
    for machine, listing in sorted(listings.items()):
        if listing is None:
            unknown.append(machine)
            continue
        for entry in listing:
            if entry.name != repository:
                continue
            containers_up = all(c.state == "running" for c in entry.containers)
            running = entry.mounted and entry.docker.running and containers_up
            copies.append(Copy(machine, running=running, stale=bool(entry.moved_to)))
    return copies, unknown


def observe(
    spec: RepositoryPlacementSpec,
    status: RepositoryPlacementStatus,
    machines: Mapping[str, MachineView],
    listings: Mapping[str, Listing],
    cluster_migrations: int,
    cluster_max_migrations: int,
    retry: RetryView | None,
) -> Observed:
    """listings: one per Ready machine (the others' copies are unknown anyway)."""
    copies, unknown = copies_of(spec.repository, listings)
    not_ready = {name for name, view in machines.items() if not view.ready}
    migration = status.migration or {}
    return Observed(
        desired=spec.machine,
        has_template=spec.template is not None,
        machines=dict(machines),
        copies=copies,
        migration_in_flight=migration.get("phase") not in (None, *TERMINAL),
        cluster_migrations=cluster_migrations,
        cluster_max_migrations=cluster_max_migrations,
        unobserved=tuple(sorted(not_ready | set(unknown))),
        ever_placed=bool(status.current_machine or status.last_migration),
        retry=retry,
    )
