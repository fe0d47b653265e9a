"""One reconcile of one RepositoryPlacement: observe, decide, act one step, write status.

Called again and again by the placement's daemon; each call does at most one phase of
a migration and persists it in status before returning, so an operator killed at any
point resumes (or rolls back) the migration it was driving.
"""

from __future__ import annotations

import datetime as dt
import logging
import secrets
import time
from typing import Any

import httpx

from berth_agent.client import AgentAPIError
from berth_api.v1alpha1 import RepositoryPlacementSpec
from berth_api.v1alpha1.placement_types import HISTORY_LIMIT, Strategy
from berth_common.crash import CrashPoints
from berth_common.units import parse_rate
from berth_operator import metrics
from berth_operator.agents import MachineAgents
from berth_operator.config import OperatorConfig
from berth_operator.kube import Kube
from berth_operator.machine.heartbeat import is_ready
from berth_operator.migration.driver import MigrationDriver
from berth_operator.migration.state import MigrationState, Mode, Phase, now
from berth_operator.placement import decide as d
from berth_operator.placement.conditions import Verdict, already_stalled, build_conditions
from berth_operator.placement.publish import EndpointPublisher, PublishError
from berth_operator.placement.status import last_migration, parse_seconds

log = logging.getLogger("berth.operator.placement")
RETRY_LIMIT = 3
RETRY_BACKOFF = (15.0, 60.0, 240.0)


def progress_worth_writing(phase: Phase, seconds_since_last: float) -> bool:
    """A push's progress goes into status at most once a second, and never while the
    application is frozen (the final push): a status write there is downtime."""
    return phase != Phase.CUTOVER and seconds_since_last > 1


class PlacementReconciler:
    def __init__(self, kube: Kube, agents: MachineAgents, config: OperatorConfig) -> None:
        self.kube, self.agents, self.config = kube, agents, config
        self._generations: dict[tuple[str | None, str], int | None] = {}  # as last seen
        # Every placement's observation counts the migrations in flight: one listing of
        # the placements serves all of them for a few seconds, not one listing each.
        self._in_flight = agents.shared(self._migrations_in_flight)
        self.publisher = EndpointPublisher(kube, agents)

    # --- entry point -------------------------------------------------------------------
    def reconcile(self, obj: dict[str, Any]) -> float:
        """One step; returns how many seconds until the next look (0: at once)."""
        meta, status = obj["metadata"], dict(obj.get("status") or {})
        spec = RepositoryPlacementSpec.model_validate(obj["spec"])
        ctx = f"{meta.get('namespace')}/{meta['name']}"
        if status.get("migration"):
            return self._step_migration(obj, spec, status)
        retry = status.get("retry") or {}
        if (
            retry.get("generation") == meta.get("generation")
            and retry.get("attempts", 0) >= RETRY_LIMIT
        ):
            self._write(
                obj,
                status,
                Verdict(
                    False,
                    False,
                    True,
                    "MigrationFailed",
                    f"{RETRY_LIMIT} migrations to {spec.machine} "
                    f"failed; last: {retry.get('reason')}",
                ),
            )
            return self.config.poll_seconds * 6
        key = (meta.get("namespace"), meta["name"])
        if self._generations.setdefault(key, meta.get("generation")) != meta.get("generation"):
            # A new desire (e.g. a move just asked for): decide on the Machines as they
            # are, not as shared a moment ago. (Not on first sight: at start-up every
            # placement is new, and the shared list is fresh anyway.)
            self._generations[key] = meta.get("generation")
            self.agents.machines_changed()
        not_before = float(retry.get("notBefore", 0))
        if not_before > time.time():
            return not_before - time.time()
        action = d.decide(self._observe(spec, status))
        log.info(
            "placement decided",
            extra={"placement": ctx, "action": type(action).__name__, "reason": action.reason},
        )
        return self._act(obj, spec, status, action)

    # --- observation -------------------------------------------------------------------
    def _observe(self, spec: RepositoryPlacementSpec, status: dict[str, Any]) -> d.Observed:
        machines = self.agents.machines()
        in_flight = self._in_flight.get()
        views = {}
        for name, machine in machines.items():
            views[name] = d.MachineView(
                name=name,
                ready=is_ready(machine) and self._fresh(machine),
                cordoned=bool(machine["spec"].get("cordoned")),
                migrations=sum(1 for m in in_flight if name in (m["source"], m["target"])),
                max_migrations=int(machine["spec"].get("maxConcurrentMigrations", 1)),
            )
        ready = [v.name for v in views.values() if v.ready]
        copies, unreachable = self._copies(spec.repository, ready)
        unobserved = sorted(set(views) - set(ready) | set(unreachable))
        return d.Observed(
            desired=spec.machine,
            has_template=spec.template is not None,
            machines=views,
            copies=copies,
            migration_in_flight=False,
            cluster_migrations=len(in_flight),
            cluster_max_migrations=self.config.cluster_max_migrations,
            unobserved=tuple(unobserved),
            ever_placed=bool(status.get("currentMachine") or status.get("lastMigration")),
        )

    def _migrations_in_flight(self) -> list[dict[str, Any]]:
        """Every placement's migration that has not ended, cluster-wide."""
        found = [p.get("status", {}).get("migration") for p in self.kube.placements()]
        return [m for m in found if m and m.get("phase") not in _TERMINAL]

    def _fresh(self, machine: dict[str, Any]) -> bool:
        beat = machine.get("status", {}).get("lastHeartbeat")
        if not beat:
            return False
        age = dt.datetime.now(dt.UTC) - dt.datetime.fromisoformat(beat.replace("Z", "+00:00"))
        return age.total_seconds() < self.config.stale_heartbeat_seconds

    def _copies(self, repository: str, machines: list[str]) -> tuple[list[d.Copy], list[str]]:
        """The copies found on `machines`, and the machines that could not be asked."""
        copies, unreachable = [], []
        for machine in machines:
            try:
                # Shared by all placements for a few seconds; berth's own actions (create,
                # start, each migration step) invalidate the machines they act on.
                found = [r for r in self.agents.repositories(machine) if r["name"] == repository]
            except (httpx.HTTPError, AgentAPIError, OSError):
                unreachable.append(machine)  # its copy is unknown, not absent
                continue
            for r in found:
                containers_up = all(c["state"] == "running" for c in r["containers"])
                running = bool(r["mounted"] and r["docker"]["running"] and containers_up)
                copies.append(d.Copy(machine, running=running, stale=bool(r.get("moved_to"))))
        return copies, unreachable

    # --- acting ------------------------------------------------------------------------
    def _act(
        self,
        obj: dict[str, Any],
        spec: RepositoryPlacementSpec,
        status: dict[str, Any],
        action: d.Action,
    ) -> float:
        if isinstance(action, d.Settled):
            status["currentMachine"] = action.machine
            status["retry"] = None  # null: a merge patch removes it
            try:
                self.publisher.publish(obj, spec, status, action.machine)
            except PublishError as err:
                self._write(obj, status, Verdict(False, True, False, "DNSNotUpdated", str(err)))
                return self.config.poll_seconds * 2
            self._write(
                obj, status, Verdict(True, False, False, "Placed", action.message), phase="Placed"
            )
            return self.config.poll_seconds * 2
        if isinstance(action, d.Stall):
            verdict = Verdict(False, False, True, action.reason, action.message)
            generation = obj["metadata"].get("generation")
            announced = already_stalled(status.get("conditions") or [], verdict, generation)
            self._write(obj, status, verdict, phase="Stalled")
            if not announced:
                self.kube.event(obj, action.reason, action.message, "Warning")
            return self.config.poll_seconds * 2
        if isinstance(action, d.Wait):
            self._write(
                obj,
                status,
                Verdict(False, True, False, action.reason, action.message),
                phase="Waiting",
            )
            return self.config.poll_seconds
        try:
            if isinstance(action, d.Create):
                self._create(spec, action.machine)
                status["currentMachine"] = action.machine
                self.kube.event(obj, "Created", f"repository created on {action.machine}")
                self._write(obj, status, Verdict(False, True, False, "Created", action.message))
                return 0
            if isinstance(action, d.Start):
                with self.agents.client(action.machine) as agent:
                    agent.up(spec.repository, wait_answer=60)
                status["currentMachine"] = action.machine
                self.kube.event(obj, "Started", f"repository started on {action.machine}")
                self._write(obj, status, Verdict(False, True, False, "Started", action.message))
                return 0
        except (AgentAPIError, httpx.HTTPError) as err:
            message = err.message if isinstance(err, AgentAPIError) else str(err)
            self._write(obj, status, Verdict(False, True, False, "AgentError", message))
            return self.config.poll_seconds * 2
        finally:
            if isinstance(action, (d.Create, d.Start)):  # done or not: look again
                self.agents.invalidate(action.machine)
        assert isinstance(action, d.Migrate)
        return self._begin_migration(obj, spec, status, action)

    def _create(self, spec: RepositoryPlacementSpec, machine: str) -> None:
        template = spec.template
        assert template is not None
        with self.agents.client(machine) as agent:
            if template.services:
                # The agent's services.json has snake_case keys (stop_signal), not the CRD's.
                services = {
                    "services": [
                        s.model_dump(mode="json", exclude_none=True) for s in template.services
                    ]
                }
                agent.create(spec.repository, template.size, services=services)
            else:
                agent.create(spec.repository, template.size, template=template.app or "empty")
            agent.up(spec.repository, wait_answer=60)

    def _begin_migration(
        self,
        obj: dict[str, Any],
        spec: RepositoryPlacementSpec,
        status: dict[str, Any],
        action: d.Migrate,
    ) -> float:
        meta = obj["metadata"]
        live = spec.checkpoint and spec.strategy == Strategy.LIVE
        state = MigrationState(
            id=f"{meta['name'][:40].rstrip('-')}-g{meta.get('generation', 0)}-"
            f"{secrets.token_hex(2)}",
            repository=spec.repository,
            guid="",
            source=action.source,
            target=action.target,
            mode=Mode.LIVE if live else Mode.COLD,
            memory=spec.memory.value,
            stop_grace=spec.stop_grace_period_seconds,
        )
        status["migration"] = state.model_dump(mode="json")
        self.kube.event(
            obj,
            "MigrationStarted",
            f"{state.id}: {state.mode} migration from {state.source} to {state.target}",
        )
        try:
            self._write(
                obj,
                status,
                Verdict(False, True, False, "Migrating", action.message),
                phase=state.phase.value,
            )
        finally:  # one more in flight, once written
            self._in_flight.invalidate()
        return 0

    # --- migrations ----------------------------------------------------------------------
    def _step_migration(
        self, obj: dict[str, Any], spec: RepositoryPlacementSpec, status: dict[str, Any]
    ) -> float:
        state = MigrationState.model_validate(status["migration"])
        last_progress = [0.0]
        changes: list[tuple[str, str]] = []  # Events are posted after the step, off its path

        def on_event(current: MigrationState, event: dict[str, Any]) -> None:
            if event["event"] == "phase":
                changes.append((event["from"], event["to"]))
            # Persisted before each step that must survive an operator restart: the
            # freeze, and the revival on the target (Verifying) that follows it at once.
            verifying = event["event"] == "phase" and event["to"] == Phase.VERIFYING.value
            if event["event"] == "freezing" or verifying:
                status["migration"] = _persisted(current)
                self._write(obj, status, _migrating(current), phase=current.phase.value)
            elif event["event"] == "progress" and progress_worth_writing(
                current.phase, time.monotonic() - last_progress[0]
            ):
                last_progress[0] = time.monotonic()
                status["migration"] = {
                    **current.model_dump(mode="json"),
                    "progress": {
                        k: event[k] for k in ("label", "bytes_done", "bytes_total", "rate")
                    },
                }
                self._write(obj, status, _migrating(current), phase=current.phase.value)

        driver = MigrationDriver(
            self.agents,
            self.config.identity,
            on_event=on_event,
            bandwidth=_bandwidth(spec),
            compress=spec.transfer.compression,
            crash=CrashPoints(self.config.crash_file),
        )
        before = state.phase
        try:
            state = driver.advance(state)
        finally:  # the step changed what both machines hold, or may have
            self.agents.invalidate(state.source, state.target)
        if before != Phase.FINALIZING and state.phase == Phase.FINALIZING:
            # The target answers: clients are sent there before the source is stopped.
            try:
                self.publisher.publish(obj, spec, status, state.target)
            except PublishError as err:  # the settled placement tries again
                log.warning("publish failed", extra={"migration": state.id, "error": str(err)})
        for old, new in changes:
            failed = new in (Phase.FAILED.value, Phase.ROLLED_BACK.value)
            self.kube.event(
                obj,
                f"Phase{new}",
                f"{state.id}: {old} -> {new}" + (f" ({state.reason})" if failed else ""),
                "Warning" if failed else "Normal",
            )
        if not state.done:
            status["migration"] = _persisted(state)
            self._write(obj, status, _migrating(state), phase=state.phase.value)
            return 0
        try:
            return self._finish_migration(obj, spec, status, state)
        finally:  # one fewer in flight, once written
            self._in_flight.invalidate()

    def _finish_migration(
        self,
        obj: dict[str, Any],
        spec: RepositoryPlacementSpec,
        status: dict[str, Any],
        state: MigrationState,
    ) -> float:
        record = last_migration(state)
        status["lastMigration"] = record
        status["history"] = [record, *(status.get("history") or [])][:HISTORY_LIMIT]
        status["migration"] = None
        metrics.MIGRATIONS.labels(state.result or "Unknown", state.mode.value).inc()
        metrics.BYTES.labels("bulk").inc(state.bulk_bytes)
        metrics.BYTES.labels("delta").inc(state.delta_bytes)
        metrics.BYTES.labels("postcopy").inc(state.postcopy_bytes)
        metrics.FAULTED_PAGES.inc(state.postcopy_faulted_pages)
        if state.postcopy_seconds is not None:
            metrics.POSTCOPY.observe(state.postcopy_seconds)
        if state.result == "Succeeded":
            status["currentMachine"] = state.target
            status["retry"] = None  # null: a merge patch removes it
            if state.downtime_seconds is not None:
                metrics.DOWNTIME.observe(state.downtime_seconds)
            message = (
                f"{state.id}: moved to {state.target}, downtime "
                f"{state.downtime_seconds:.3f}s, delta {state.delta_bytes} bytes"
            )
            self.kube.event(obj, "Migrated", message)
            if state.killed:
                self.kube.event(
                    obj,
                    "StopGraceExceeded",
                    f"{', '.join(state.killed)} did not stop on the stop signal and were "
                    "killed at the end of their grace period (spec.stopGracePeriodSeconds)",
                    "Warning",
                )
            budget = parse_seconds(spec.downtime_budget)
            if budget is not None and (state.downtime_seconds or 0) > budget:
                self.kube.event(
                    obj,
                    "DowntimeBudgetExceeded",
                    f"{state.downtime_seconds:.3f}s > {spec.downtime_budget}",
                    "Warning",
                )
            self._write(obj, status, Verdict(False, True, False, "Migrated", message))
            return 0
        retry = status.get("retry") or {}
        generation = obj["metadata"].get("generation")
        attempts = retry.get("attempts", 0) + 1 if retry.get("generation") == generation else 1
        status["currentMachine"] = state.source
        status["retry"] = {
            "generation": generation,
            "attempts": attempts,
            "reason": state.reason,
            "notBefore": time.time() + RETRY_BACKOFF[min(attempts, 3) - 1],
        }
        self._write(
            obj,
            status,
            Verdict(
                False,
                True,
                False,
                state.result or "Failed",
                f"{state.id} {state.result}: {state.reason}; attempt {attempts} of {RETRY_LIMIT}",
            ),
        )
        return 0

    # --- status ------------------------------------------------------------------------
    def _write(
        self,
        obj: dict[str, Any],
        status: dict[str, Any],
        verdict: Verdict,
        phase: str | None = None,
    ) -> None:
        meta = obj["metadata"]
        generation = meta.get("generation")
        status["observedGeneration"] = generation
        status["conditions"] = build_conditions(
            status.get("conditions") or [], verdict, generation, now()
        )
        status["phase"] = phase or verdict.reason
        self.kube.patch_placement_status(meta["namespace"], meta["name"], status)
        obj["status"] = status


_TERMINAL = {p.value for p in (Phase.SUCCEEDED, Phase.FAILED, Phase.ROLLED_BACK)}


def _persisted(state: MigrationState) -> dict[str, Any]:
    # progress: null, so a merge patch drops the last transfer's progress once it is over.
    return {**state.model_dump(mode="json"), "progress": None}


def _migrating(state: MigrationState) -> Verdict:
    return Verdict(
        False,
        True,
        False,
        "Migrating",
        f"{state.id}: {state.phase.value} ({state.source} -> {state.target})",
    )


def _bandwidth(spec: RepositoryPlacementSpec) -> float | None:
    limit = spec.transfer.bandwidth_limit  # the CRD's pattern already checked its shape
    return parse_rate(limit) if limit else None
