"""What a RepositoryPlacement needs next, from what is observed (pure).

Every decision about a placement is made here, from frozen observations: in-flight
migrations, retries after a failure and waits included. The controller only carries out
the action.

A migration in flight runs to its end, even if spec.machine changes meanwhile: the new
machine is queued and the next decision moves the repository again. The one exception is
spec.machine set back to the migration's source before its commit point (the freeze):
that cancels it. After the freeze, stopping would cost a rollback, a second downtime.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from berth_operator.migration.retry import RetryView
from berth_operator.placement.capacity import create_refusal, move_refusal
from berth_operator.placement.reasons import Reason


@dataclass(frozen=True)
class MachineView:
    name: str
    ready: bool
    cordoned: bool
    migrations: int  # in flight, as source or target
    max_migrations: int
    capacity_bytes: int | None = None  # spec.capacityBytes
    held_bytes: Mapping[str, int] = field(default_factory=dict)  # used, by repository


@dataclass(frozen=True)
class Copy:
    """A repository image found on a machine."""

    machine: str
    running: bool  # mounted with its dockerd up
    stale: bool  # left behind by a migration (moved_to is set)
    used_bytes: int = 0  # what its image uses on the datastore


@dataclass(frozen=True)
class Observed:
    desired: str
    has_template: bool
    machines: dict[str, MachineView]
    copies: list[Copy]
    migration_in_flight: bool
    cluster_migrations: int
    cluster_max_migrations: int
    # Machines whose repositories could not be listed (not Ready, or their agent did not
    # answer): a copy there is unknown, so its absence proves nothing.
    unobserved: tuple[str, ...] = ()
    ever_placed: bool = False  # berth has run it before (status names a machine)
    retry: RetryView | None = None  # migrations of this generation that failed
    # The migration in flight may still be cancelled and spec.machine is its source again.
    cancel_requested: bool = False
    repository: str = ""
    template_bytes: int | None = None  # spec.template.size


# Actions ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class Action:
    reason: Reason
    message: str


@dataclass(frozen=True)
class Continue(Action):
    """Advance the migration recorded in status by one phase."""


@dataclass(frozen=True)
class Cancel(Action):
    """End the migration recorded in status before its commit point: it stays where it
    runs."""


@dataclass(frozen=True)
class Create(Action):
    machine: str


@dataclass(frozen=True)
class Start(Action):
    machine: str


@dataclass(frozen=True)
class Migrate(Action):
    source: str
    target: str


@dataclass(frozen=True)
class Settled(Action):
    machine: str


@dataclass(frozen=True)
class Wait(Action):
    """Look again later: a transient condition (machine not ready, limits reached, a
    failed migration's back-off). retry_after: seconds; None: the controller's poll."""

    retry_after: float | None = None


@dataclass(frozen=True)
class Stall(Action):
    """A person must act: the spec asks for something that cannot be done."""


def decide(obs: Observed) -> Action:
    if obs.migration_in_flight:
        if obs.cancel_requested:
            return Cancel(
                Reason.CANCELLING,
                f"spec.machine is {obs.desired} again, before the move's commit point",
            )
        return Continue(Reason.MIGRATING, "a migration is in progress")
    target = obs.machines.get(obs.desired)
    if target is None:
        return Stall(Reason.UNKNOWN_MACHINE, f"no Machine named {obs.desired!r}")
    live = [c for c in obs.copies if not c.stale]
    if len(live) > 1:
        where = ", ".join(sorted(c.machine for c in live))
        return Stall(
            Reason.SPLIT_BRAIN,
            f"the repository is live on several machines: {where}; berth will not choose one",
        )
    if not live:
        if obs.unobserved and (obs.ever_placed or not obs.has_template):
            # Creating it now could start a second, empty copy beside a live one that a
            # dead agent hides; a stale-copy or not-found verdict could be just as wrong.
            # A placement never placed is created: one machine down must not stop that.
            where = ", ".join(sorted(obs.unobserved))
            return Wait(
                Reason.MACHINES_UNOBSERVED,
                f"no live copy seen, but {where} could not be asked; "
                "waiting until every machine answers (or its Machine is removed)",
            )
        if obs.copies:
            return Stall(
                Reason.ONLY_STALE_COPIES,
                "only copies left behind by migrations exist "
                f"(on {obs.copies[0].machine}); start one by hand",
            )
        if not obs.has_template:
            return Stall(
                Reason.REPOSITORY_NOT_FOUND,
                "the repository exists on no machine and spec.template is not set",
            )
        if obs.template_bytes is not None:
            too_big = create_refusal(obs.desired, target.capacity_bytes, obs.template_bytes)
            if too_big:
                return Stall(Reason.DATASTORE_TOO_SMALL, too_big)
        if not target.ready:
            return Wait(Reason.MACHINE_NOT_READY, f"machine {obs.desired} is not Ready")
        return Create(Reason.CREATING, f"creating the repository on {obs.desired}", obs.desired)
    copy = live[0]
    if copy.machine == obs.desired:
        if not copy.running:
            return Start(
                Reason.STARTING, f"starting the repository on {copy.machine}", copy.machine
            )
        return Settled(Reason.PLACED, f"running on {copy.machine}", copy.machine)
    if obs.retry is not None and obs.retry.exhausted:
        return Stall(
            Reason.MIGRATION_FAILED,
            f"{obs.retry.limit} migrations to {obs.desired} failed; last: {obs.retry.reason}",
        )
    if obs.retry is not None and obs.retry.wait_seconds > 0:
        return Wait(
            Reason.BACKING_OFF,
            f"attempt {obs.retry.attempts} of {obs.retry.limit} failed ({obs.retry.reason}); "
            f"the next starts in {obs.retry.wait_seconds:.0f}s",
            retry_after=obs.retry.wait_seconds,
        )
    if target.cordoned:
        return Stall(Reason.TARGET_CORDONED, f"machine {obs.desired} is cordoned")
    full = move_refusal(
        obs.desired, target.capacity_bytes, target.held_bytes, obs.repository, copy.used_bytes
    )
    if full:
        # A person frees room or raises the cap; either changes the Machine, which
        # brings this placement back.
        return Stall(Reason.TARGET_OVER_CAPACITY, full)
    if not target.ready:
        return Wait(Reason.MACHINE_NOT_READY, f"machine {obs.desired} is not Ready")
    source = obs.machines.get(copy.machine)
    if source is None or not source.ready:
        return Wait(Reason.SOURCE_NOT_READY, f"machine {copy.machine} (where it runs) is not Ready")
    if obs.cluster_migrations >= obs.cluster_max_migrations:
        return Wait(Reason.QUEUED, "the cluster-wide migration limit is reached")
    for machine in (source, target):
        if machine.migrations >= machine.max_migrations:
            return Wait(
                Reason.QUEUED,
                f"machine {machine.name} is at its limit of "
                f"{machine.max_migrations} concurrent migrations",
            )
    if not copy.running:
        return Start(
            Reason.STARTING,
            f"starting the repository on {copy.machine} before moving it",
            copy.machine,
        )
    return Migrate(
        Reason.MIGRATING,
        f"moving from {copy.machine} to {obs.desired}",
        source=copy.machine,
        target=obs.desired,
    )
