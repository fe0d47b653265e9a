"""Reconciling one RepositoryPlacement: observe, decide, carry out one action, write the
status once (and only if it changed).

Called by the workers for a key whenever something about the placement changed: its
own object, its Machine, what the agents report of its repository, the end of a step of
its migration. A settled placement is not looked at again until one of those changes.
Each call does at most one phase of a migration and persists it in status before
returning, so an operator killed at any point resumes (or rolls back) the migration.
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from berth_api.v1alpha1 import (
    RepositoryPlacement,
    RepositoryPlacementStatus,
)
from berth_common.agent_api.errors import AgentError
from berth_common.crash import CrashPoints
from berth_operator.agents import MachineAgents
from berth_operator.config import OperatorConfig
from berth_operator.controller.cache import ObjectCache
from berth_operator.controller.workers import DONE, Result
from berth_operator.credentials import CredentialsMissing, RepositoryKeys
from berth_operator.kube import Kube
from berth_operator.machine.inventory import Inventories
from berth_operator.migration import lifecycle
from berth_operator.migration.listener import TransferProgress
from berth_operator.migration.retry import retry_view
from berth_operator.migration.runner import MigrationRunner, StatusHooks, migrating_changes
from berth_operator.migration.state import TERMINAL, MigrationState, Phase, now, timestamp
from berth_operator.placement import decide as d
from berth_operator.placement.conditions import Verdict, already_said
from berth_operator.placement.observe import machine_view, observe
from berth_operator.placement.provision import Provisioner
from berth_operator.placement.publish import EndpointPublisher, PublishError, dns_confirmation
from berth_operator.placement.reasons import PlacementPhase, Reason
from berth_operator.placement.refusals import failed_verdict
from berth_operator.placement.status import build_status
from berth_operator.placement.status_writer import PlacementChanged, PlacementKey, StatusWriter

log = logging.getLogger("berth.operator.placement")
LOOKS_AT_ONCE = 8  # fresh looks at machines before acting, asked in parallel
IN_FLIGHT = "*"  # the "migrating" index's value for every migration in flight


def migrating_on(obj: dict[str, Any]) -> list[str]:
    """The "migrating" index: a migration in flight counts for its source, its target
    and the cluster (IN_FLIGHT)."""
    migration = (obj.get("status") or {}).get("migration") or {}
    if not migration or migration.get("phase") in TERMINAL:
        return []
    return [migration["source"], migration["target"], IN_FLIGHT]


def placed_on(obj: dict[str, Any]) -> list[str]:
    """The "machine" index: where it should run and where it runs."""
    status = obj.get("status") or {}
    return [m for m in (obj["spec"].get("machine"), status.get("currentMachine")) if m]


def repository_of(obj: dict[str, Any]) -> list[str]:
    return [obj["spec"]["repository"]]


PLACEMENT_INDEXES = {"migrating": migrating_on, "machine": placed_on, "repository": repository_of}


class PlacementController:
    def __init__(
        self,
        kube: Kube,
        placements: ObjectCache[PlacementKey],
        machines: ObjectCache[str],
        inventories: Inventories,
        agents: MachineAgents,
        config: OperatorConfig,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.kube, self.placements, self.machines = kube, placements, machines
        self.inventories, self.agents, self.config, self.clock = inventories, agents, config, clock
        self.writer = StatusWriter(kube, placements)
        self.publisher = EndpointPublisher(kube, agents, inventories, dns_confirmation(config))
        self.keys = RepositoryKeys(kube)
        self.provisioner = Provisioner(agents)
        self.runner = MigrationRunner(agents, config, self.keys, clock)
        self.crash = CrashPoints(config.crash_file)
        # Migrations admitted whose start is being written: they count against the limits
        # from the moment they are admitted, so two workers never both take the last free
        # slot of a machine or the cluster, and none waits for another's write.
        self._admission = threading.Lock()
        self._reserved: dict[PlacementKey, tuple[str, str]] = {}
        self._looks = ThreadPoolExecutor(LOOKS_AT_ONCE, thread_name_prefix="look")

    # --- entry point ---------------------------------------------------------------------
    def reconcile(self, key: PlacementKey) -> Result:
        placement = self._placement(key)
        if placement is None:
            return DONE
        action = d.decide(self._observe(placement))
        if isinstance(action, (d.Continue, d.Cancel)):
            state = MigrationState.model_validate(placement.status.migration)
            if isinstance(action, d.Cancel):
                self._log_decision(key, action)
                return self._cancel(key, placement, state)
            return self._step(key, placement, state)
        if isinstance(action, (d.Create, d.Start, d.Migrate)):
            # Acting changes machines: first a fresh look at the ones it touches.
            self._look_again(action)
            with self._admission:
                placement = self._placement(key)
                if placement is None:
                    return DONE
                action = d.decide(self._observe(placement))
                if isinstance(action, d.Migrate):
                    self._reserved[key] = (action.source, action.target)
            if isinstance(action, d.Migrate):
                try:
                    begun = self._begin(key, placement, action)
                finally:  # written (and counted from the cache), or not begun at all
                    with self._admission:
                        del self._reserved[key]
                self._log_decision(key, action)
                self._event(key, lifecycle.started_notice(begun))
                return Result(0)
        self._log_decision(key, action)
        return self._act(key, placement, action)

    def _placement(self, key: PlacementKey) -> RepositoryPlacement | None:
        obj = self.placements.get(key)
        if obj is None or obj["metadata"].get("deletionTimestamp"):
            return None
        return RepositoryPlacement.model_validate(obj)

    def _log_decision(self, key: PlacementKey, action: d.Action) -> None:
        # A placement found as it should be is not news (a start-up finds thousands).
        level = logging.DEBUG if isinstance(action, d.Settled) else logging.INFO
        log.log(
            level,
            "placement decided",
            extra={"placement": "/".join(key), "action": type(action).__name__,
                   "reason": action.reason},
        )  # fmt: skip

    # --- observation -----------------------------------------------------------------------
    def _observe(self, placement: RepositoryPlacement) -> d.Observed:
        at = timestamp(self.clock())
        migrating = self._migrating()
        views = {
            m["metadata"]["name"]: machine_view(
                m,
                len(migrating.get(m["metadata"]["name"], ())),
                self.config.stale_heartbeat_seconds,
                at,
            )
            for m in self.machines.values()
        }
        unknown = self.inventories.unknown(m for m, view in views.items() if view.ready)
        generation = placement.metadata.generation or 0
        return observe(
            placement.spec,
            placement.status,
            views,
            self.inventories.holders(placement.spec.repository),  # after unknown's first looks
            unknown,
            cluster_migrations=len(migrating.get(IN_FLIGHT, ())),
            cluster_max_migrations=self.config.cluster_max_migrations,
            retry=retry_view(placement.status.retry, generation, self.runner.policy, self.clock()),
        )

    def _migrating(self) -> dict[str, set[PlacementKey]]:
        """The migrations in flight on each machine (IN_FLIGHT: anywhere): those the cache
        holds and those admitted whose start is still being written. One look at the
        index for all machines: a decision reads it for each of them."""
        migrating = self.placements.index("migrating")
        for key, ends in list(self._reserved.items()):
            for machine in (*ends, IN_FLIGHT):
                migrating.setdefault(machine, set()).add(key)
        return migrating

    def _look_again(self, action: d.Action) -> None:
        if isinstance(action, d.Migrate):
            machines = [action.source, action.target]
        elif isinstance(action, d.Create):  # any machine may hold a copy a stale look missed
            machines = self.machines.key_list()
        elif isinstance(action, d.Start):
            machines = [action.machine]
        else:
            machines = []
        # At once: a move waits for both of its machines' answers before it begins.
        list(self._looks.map(self.inventories.refresh, machines))

    # --- acting ------------------------------------------------------------------------------
    def _write(
        self,
        key: PlacementKey,
        placement: RepositoryPlacement,
        verdict: Verdict,
        phase: str,
        *,
        guarded: bool = False,
        **changes: Any,
    ) -> None:
        """guarded: only if nobody changed the placement since the cache read it
        (StatusWriter.write)."""
        status = build_status(
            self._latest_status(key, placement), placement.metadata.generation or 0, verdict,
            now(), phase=phase, **changes,
        )  # fmt: skip
        self.writer.write(key, status, guarded=guarded)

    def _write_announced(
        self,
        key: PlacementKey,
        placement: RepositoryPlacement,
        verdict: Verdict,
        phase: str,
        **changes: Any,
    ) -> None:
        """Write a problem's verdict, and post its Warning event the first time it is said
        for this generation (not on every look while it lasts)."""
        conditions = [c.wire() for c in self._latest_status(key, placement).conditions]
        said = already_said(conditions, verdict, placement.metadata.generation)
        self._write(key, placement, verdict, phase, **changes)
        if not said:
            self._event(key, lifecycle.Notice(verdict.reason, verdict.message, warning=True))

    def _latest_status(
        self, key: PlacementKey, placement: RepositoryPlacement
    ) -> RepositoryPlacementStatus:
        """The status the cache holds (our own last write included), else placement's."""
        obj = self.placements.get(key)
        if obj is None:
            return placement.status
        return RepositoryPlacementStatus.model_validate(obj.get("status") or {})

    def _event(self, key: PlacementKey, notice: lifecycle.Notice) -> None:
        obj = self.placements.get(key)
        if obj is not None:
            self.kube.event(
                obj, notice.reason, notice.message, "Warning" if notice.warning else "Normal"
            )

    def _act(self, key: PlacementKey, placement: RepositoryPlacement, action: d.Action) -> Result:
        poll = self.config.poll_seconds
        if isinstance(action, d.Settled):
            changes: dict[str, Any] = {"current_machine": action.machine, "retry": None}
            obj = self.placements.get(key) or {}
            recorded = placement.status.dns_hostnames
            try:
                published = self.publisher.publish(obj, placement.spec, action.machine, recorded)
            except PublishError as err:
                verdict = Verdict(False, True, False, Reason.DNS_NOT_UPDATED, str(err))
                self._write(key, placement, verdict, PlacementPhase.WAITING, **changes)
                return Result(poll * 2)
            changes["dns_hostnames"] = published.dns_hostnames
            if published.endpoints is not None:
                changes["endpoints"] = published.endpoints
            dns = published.dns
            if dns is not None and not dns.confirmed:  # external-dns has not caught up
                reason = Reason.DNS_NOT_UPDATED if dns.overdue else Reason.DNS_PENDING
                waiting = Verdict(False, True, False, reason, dns.message)
                if dns.overdue:
                    self._write_announced(
                        key, placement, waiting, PlacementPhase.WAITING, **changes
                    )
                else:
                    self._write(key, placement, waiting, PlacementPhase.WAITING, **changes)
                return Result(dns.ask_again_after)
            verdict = Verdict(True, False, False, Reason.PLACED, action.message)
            self._write(key, placement, verdict, PlacementPhase.PLACED, **changes)
            return DONE
        if isinstance(action, d.Stall):
            verdict = Verdict(False, False, True, action.reason, action.message)
            self._write_announced(key, placement, verdict, PlacementPhase.STALLED)
            return DONE  # until the spec, a Machine or the repository changes
        if isinstance(action, d.Wait):
            verdict = Verdict(False, True, False, action.reason, action.message)
            self._write(key, placement, verdict, PlacementPhase.WAITING)
            return Result(action.retry_after if action.retry_after is not None else poll)
        assert isinstance(action, (d.Create, d.Start)), action
        namespace = placement.metadata.namespace or ""
        try:
            luks_key = self.keys.key_for(namespace, placement.spec)
        except CredentialsMissing as err:
            missing = Verdict(False, True, False, Reason.CREDENTIALS_NOT_FOUND, str(err))
            self._write_announced(key, placement, missing, PlacementPhase.WAITING)
            return Result(poll * 2)  # a Secret is not watched: looked for again
        try:
            if isinstance(action, d.Create):
                done = self.provisioner.create(placement.spec, action.machine, luks_key)
            else:
                done = self.provisioner.start(placement.spec, action.machine, luks_key)
        except AgentError as err:
            failed = failed_verdict(err, action.machine, creating=isinstance(action, d.Create))
            if failed.stalled:
                self._write_announced(key, placement, failed, PlacementPhase.STALLED)
                return DONE  # until the spec, a Machine or the repository changes
            self._write_announced(key, placement, failed, PlacementPhase.WAITING)
            return Result(poll * 2)
        finally:  # done or not: what the machine holds now
            self.inventories.refresh(action.machine)
        self._event(key, done.notice)
        verdict = Verdict(False, True, False, Reason(done.notice.reason), action.message)
        self._write(key, placement, verdict, done.phase, current_machine=action.machine)
        return Result(0)

    # --- migrations ------------------------------------------------------------------------
    def _begin(
        self, key: PlacementKey, placement: RepositoryPlacement, action: d.Migrate
    ) -> MigrationState:
        """The migration recorded in status, so it counts against the limits at once."""
        generation = placement.metadata.generation or 0
        migration = lifecycle.migration_id(
            placement.metadata.name, generation, secrets.token_hex(2)
        )
        state = lifecycle.begin(action, placement.spec, migration)
        self._write(
            key, placement, lifecycle.migrating_verdict(state), phase=state.phase.value,
            **migrating_changes(state, None),
        )  # fmt: skip
        return state

    def _hooks(self, key: PlacementKey, placement: RepositoryPlacement) -> StatusHooks:
        def record(
            current: MigrationState, progress: TransferProgress | None, guarded: bool = False
        ) -> None:
            self._write(
                key, placement, lifecycle.migrating_verdict(current), current.phase.value,
                guarded=guarded, **migrating_changes(current, progress),
            )  # fmt: skip

        def commit(current: MigrationState) -> None:
            record(current, None, guarded=True)

        def cancelled(current: MigrationState) -> bool:
            obj = self.placements.get(key)
            return obj is not None and obj["spec"].get("machine") == current.source

        return StatusHooks(record, commit, cancelled)

    def _step(
        self, key: PlacementKey, placement: RepositoryPlacement, state: MigrationState
    ) -> Result:
        hooks = self._hooks(key, placement)
        before = state.phase
        try:
            state, notices = self.runner.step(placement, state, hooks)
        except PlacementChanged:
            # Somebody wrote the placement just before the commit point (a cancel?):
            # nothing was frozen; decide again from what it says now.
            log.info("placement changed before the freeze", extra={"placement": "/".join(key)})
            return Result(0)
        finally:  # the step changed what both machines hold, or may have
            for machine in (state.source, state.target):
                self.inventories.refresh(machine)
        self.crash.reached(f"{before.value}.stepped")  # done, not yet written
        if before != state.phase and state.phase == Phase.FINALIZING:
            # The target answers: clients are sent there before the source is stopped.
            self._publish_early(key, placement, state.target)
        return self._recorded(key, placement, state, notices, hooks)

    def _cancel(
        self, key: PlacementKey, placement: RepositoryPlacement, state: MigrationState
    ) -> Result:
        hooks = self._hooks(key, placement)
        try:
            state, notices = self.runner.cancel(placement, state, hooks)
        finally:
            self.inventories.refresh(state.target)
        return self._recorded(key, placement, state, notices, hooks)

    def _recorded(
        self,
        key: PlacementKey,
        placement: RepositoryPlacement,
        state: MigrationState,
        notices: list[lifecycle.Notice],
        hooks: StatusHooks,
    ) -> Result:
        """The state after a step written, with the migration's end if it ended; then
        its Events."""
        if not state.done:
            hooks.record(state, None)
        else:
            done, changes = self.runner.finished(placement, state)
            self._write(key, placement, done.verdict, state.phase.value, **changes)
            notices = [*notices, *done.notices]
        for notice in notices:
            self._event(key, notice)
        return Result(0)

    def _publish_early(
        self, key: PlacementKey, placement: RepositoryPlacement, machine: str
    ) -> None:
        obj, recorded = self.placements.get(key) or {}, placement.status.dns_hostnames
        try:
            published = self.publisher.publish(
                obj, placement.spec, machine, recorded, confirm=False
            )
        except PublishError as err:  # the settled placement tries again
            log.warning("publish failed", extra={"placement": "/".join(key), "error": str(err)})
            return
        changes: dict[str, Any] = {"dns_hostnames": published.dns_hostnames}
        if published.endpoints is not None:
            changes["endpoints"] = published.endpoints
        self.writer.write(key, self._latest_status(key, placement).model_copy(update=changes))
