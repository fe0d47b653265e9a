"""What decide() is given, built from what the operator holds (pure): the Machines and
the migrations in flight from the cache, where the repository is listed from the
inventories, the retry state from status."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from berth_api.v1alpha1 import RepositoryPlacementSpec
from berth_api.v1alpha1.placement_types import RepositoryPlacementStatus
from berth_common.agent_api.models import RepositoryStatus
from berth_common.units import parse_image_size
from berth_operator.machine.heartbeat import heartbeat_age, is_ready
from berth_operator.migration.retry import RetryView
from berth_operator.migration.state import TERMINAL, MigrationState
from berth_operator.placement.decide import Copy, MachineView, Observed


def machine_view(
    machine: dict[str, Any], migrations: int, stale_seconds: float, now: str
) -> MachineView:
    status = machine.get("status") or {}
    capacity = machine["spec"].get("capacityBytes")
    return MachineView(
        name=machine["metadata"]["name"],
        ready=is_ready(machine) and heartbeat_age(status, now) < stale_seconds,
        cordoned=bool(machine["spec"].get("cordoned")),
        migrations=migrations,
        max_migrations=int(machine["spec"].get("maxConcurrentMigrations", 1)),
        capacity_bytes=None if capacity is None else int(capacity),
        # Only where a cap makes it matter: a reconcile looks at every machine, and a
        # machine may hold hundreds of repositories.
        held_bytes={
            r["name"]: int(r.get("usedBytes") or 0) for r in status.get("repositories") or []
        }
        if capacity is not None
        else {},
    )


def copies_of(found: Mapping[str, RepositoryStatus]) -> list[Copy]:
    """The copies of a repository, from its entry on each machine that lists it."""
    copies = []
    for machine, entry in sorted(found.items()):
        containers_up = all(c.state == "running" for c in entry.containers)
        running = entry.mounted and entry.docker.running and containers_up
        copies.append(
            Copy(
                machine,
                running=running,
                stale=bool(entry.moved_to),
                used_bytes=entry.allocated_bytes,
            )
        )
    return copies


def observe(
    spec: RepositoryPlacementSpec,
    status: RepositoryPlacementStatus,
    machines: Mapping[str, MachineView],
    found: Mapping[str, RepositoryStatus],
    unknown: Iterable[str],
    cluster_migrations: int,
    cluster_max_migrations: int,
    retry: RetryView | None,
) -> Observed:
    """found: the repository's entry on each machine whose last look listed it;
    unknown: machines whose holdings are unknown (their agent did not answer). Copies
    count only on Ready machines; the others, and the unknown, are unobserved."""
    not_ready = {name for name, view in machines.items() if not view.ready}
    unobserved = not_ready | (set(unknown) & machines.keys())
    copies = copies_of({m: e for m, e in found.items() if m in machines and m not in unobserved})
    migration = status.migration or {}
    in_flight = migration.get("phase") not in (None, *TERMINAL)
    cancel = (
        in_flight
        and migration.get("source") == spec.machine
        and MigrationState.model_validate(migration).cancellable
    )
    return Observed(
        desired=spec.machine,
        has_template=spec.template is not None,
        machines=dict(machines),
        copies=copies,
        migration_in_flight=in_flight,
        cluster_migrations=cluster_migrations,
        cluster_max_migrations=cluster_max_migrations,
        unobserved=tuple(sorted(unobserved)),
        ever_placed=bool(status.current_machine or status.last_migration),
        retry=retry,
        cancel_requested=cancel,
        repository=spec.repository,
        template_bytes=parse_image_size(spec.template.size) if spec.template else None,
    )
