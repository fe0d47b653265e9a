"""Performing a migration's phases through the agents.

Each call to `advance` does the work of the current phase and returns the state with
the next phase; the caller persists it in between (the operator writes it to status),
so a restarted caller replays at most one phase, and every agent call it makes is keyed
by the migration id. Failure rules (docs/design.md#failure-rules): before the freeze,
abort and leave the source running; after the freeze and before the target answers,
resume on the source.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import time
import urllib.parse
from collections.abc import Callable, Iterator
from typing import Protocol

from berth_common import tokens
from berth_common.agent_api.client import AgentClient
from berth_common.agent_api.errors import AgentError, AgentRefused, AgentUnreachable
from berth_common.agent_api.models import PostCopyProgress, PostCopyStatus, PushResult
from berth_common.crash import CrashPoints
from berth_common.pki import CertFiles
from berth_common.units import human_bytes
from berth_operator.migration.downtime import app_downtime
from berth_operator.migration.listener import MigrationListener, TransferProgress
from berth_operator.migration.rounds import should_cut_over
from berth_operator.migration.state import (
    MigrationState,
    Mode,
    Phase,
    now,
    steps_together,
    timestamp,
)

log = logging.getLogger("berth.operator.migration")


class Agents(Protocol):
    """Where to reach each machine's agent."""

    def client(self, machine: str) -> AgentClient: ...

    def endpoint(self, machine: str) -> str: ...


class MigrationError(RuntimeError):
    pass


class MigrationCancelled(Exception):
    """The migration was asked to stop, and can be: it has not passed its commit point."""


# Room on the target for the image as allocated now, plus what it may grow by meanwhile.
SPACE_MARGIN = 1.2
# Forgetting an ended migration's transfer is tidying with each agent's sweeper behind it:
# a partitioned machine must not hold the step (and the status it ends with) for minutes.
FORGET_TIMEOUT = 5.0
# Post-copy: how often the target is asked whether every page has arrived, and how long
# one step waits for it before handing back (so status shows the phase meanwhile).
POSTCOPY_POLL = 0.1
POSTCOPY_STEP = 30.0
POSTCOPY_STALL = 20.0  # seconds without a byte received before post-copy is given up


class MigrationDriver:
    def __init__(
        self,
        agents: Agents,
        signer: CertFiles,
        listener: MigrationListener,
        *,
        bandwidth: float | None = None,
        compress: bool = False,
        answer_timeout: float = 60,
        crash: CrashPoints | None = None,
        clock: Callable[[], float] = time.time,
        repository_key: Callable[[], bytes | None] = lambda: None,
    ) -> None:
        """repository_key: the LUKS key of an encrypted repository (None: not encrypted),
        read when needed and kept nowhere; raises a MigrationError if it is missing."""
        self.agents, self.signer = agents, signer
        self.repository_key = repository_key
        # Wall clock (seconds since the epoch): the freeze's moment survives a restart.
        self.clock = clock
        self.crash = crash or CrashPoints(None)
        self.listener = listener
        self.bandwidth, self.compress, self.answer_timeout = bandwidth, compress, answer_timeout
        self._open: dict[str, AgentClient] = {}
        # The key read before the freeze, for the revival after it (None: not encrypted).
        self._key: bytes | None = None
        self._key_read = False

    @contextlib.contextmanager
    def _agent(self, machine: str) -> Iterator[AgentClient]:
        """The machine's agent, over one connection for the whole step: while the
        application is frozen, a TLS handshake per call is time it does not answer."""
        if machine not in self._open:
            self._open[machine] = self.agents.client(machine)
        yield self._open[machine]

    def run(self, state: MigrationState) -> MigrationState:
        while not state.done:
            state = self.advance(state)
        return state

    def advance(self, state: MigrationState) -> MigrationState:
        """One phase; after the cutover also the next: while the application is frozen,
        no round trip through the API server is worth its time. (The listener sees the
        phase change first, so Verifying is persisted before the target starts it.)"""
        state = state.model_copy(deep=True)
        try:
            self._step(state)
            if state.phase == Phase.VERIFYING:
                self._step(state)
        finally:
            self._close()
        return state

    def _close(self) -> None:
        for client in self._open.values():
            client.close()
        self._open.clear()

    def _step(self, state: MigrationState) -> None:
        phase = state.phase
        self.crash.reached(phase.value)
        started = time.monotonic()
        try:
            self._do(state)
        except MigrationCancelled:
            self._cancel(state)
        except (AgentRefused, MigrationError, OSError) as err:
            reason = err.message if isinstance(err, AgentRefused) else str(err)
            self._fail(state, phase, reason)
        state.phase_seconds[phase.value] = (
            state.phase_seconds.get(phase.value, 0) + time.monotonic() - started
        )
        if state.phase != phase:
            if state.phase == Phase.VERIFYING:
                # Before the target is told to run it: a restarted operator must know that
                # it may be running there. Written while frozen: part of the downtime.
                persisting = time.monotonic()
                self.listener.persist(state)
                state.step_seconds["operator.persist"] = round(time.monotonic() - persisting, 4)
            self.listener.phase_changed(state, phase)

    # --- phases ----------------------------------------------------------------------
    def _do(self, state: MigrationState) -> None:
        match state.phase:
            case Phase.PENDING:
                state.phase = Phase.PREPARING
            case Phase.PREPARING:
                self._prepare(state)
                state.phase = Phase.BULK_SYNC
            case Phase.BULK_SYNC:
                sent = self._push(state, f"bulk{len(state.bulk_rounds) + 1}")
                state.bulk_rounds.append(sent)
                if should_cut_over(state.bulk_rounds):
                    state.phase = Phase.CUTOVER
            case Phase.CUTOVER:
                self._cutover(state)
                state.phase = Phase.VERIFYING
            case Phase.VERIFYING:
                self._verify(state)
                state.phase = Phase.POST_COPY if state.postcopy else Phase.FINALIZING
            case Phase.POST_COPY:
                if self._memory_arrived(state):
                    state.phase = Phase.FINALIZING
            case Phase.FINALIZING:
                with self._agent(state.source) as source:
                    source.down(state.repository, moved_to=state.target)
                state.phase, state.result, state.finished_at = Phase.SUCCEEDED, "Succeeded", now()
            case _:
                raise MigrationError(f"migration {state.id} already ended ({state.phase})")

    def _prepare(self, state: MigrationState) -> None:
        """Admission: a running source, a target with room that does not run it already."""
        if state.source == state.target:
            raise MigrationError(f"source and target are both {state.source}")
        self.repository_key()  # the target will need it to start it: missing fails now
        with self._agent(state.source) as source:
            status = source.status(state.repository)
        if not status.mounted or not status.docker.running:
            raise MigrationError(f"{state.repository} is not running on {state.source}")
        state.guid = status.guid
        with self._agent(state.target) as target:
            free = target.healthz().datastore.free_bytes
            held = [r for r in target.repositories() if r.guid == state.guid]
        if held and held[0].mounted:
            raise MigrationError(f"{state.repository} is mounted on {state.target} already")
        needed = int(status.allocated_bytes * SPACE_MARGIN)
        if free < needed:
            raise MigrationError(
                f"{state.target} has {human_bytes(free, binary=True)} free; "
                f"{state.repository} needs {human_bytes(needed, binary=True)}"
            )

    def _push(self, state: MigrationState, label: str) -> int:
        tid = state.transfer_id(label)
        token = tokens.issue(tid, state.guid, state.source, state.target, self.signer)
        with self._agent(state.source) as source:
            result: PushResult | None = None
            for event in source.push(
                state.repository,
                self.agents.endpoint(state.target),
                token,
                tid,
                compress=self.compress,
                bandwidth=self.bandwidth,
            ):
                if isinstance(event, PushResult):
                    result = event
                else:
                    self.listener.progress(state, TransferProgress.from_agent(label, event))
                    if state.cancellable and self.listener.cancelled(state):
                        raise MigrationCancelled(state.phase)
        if result is None:
            raise AgentUnreachable(f"the push of {tid} ended without its result")
        sent = result.bytes_sent
        if label == "final":
            _steps(state, "final", result.durations)
        log.info(
            "transfer pushed",
            extra={"migration": state.id, "repository": state.repository, "transfer": label,
                   "mode": result.mode, "bytes": sent,
                   "seconds": round(sum(result.durations.values()), 3)},
        )  # fmt: skip
        return sent

    def _cutover(self, state: MigrationState) -> None:
        first = state.frozen_at_epoch is None
        if first:
            if self.listener.cancelled(state):
                raise MigrationCancelled(state.phase)
            self._read_key()  # now, not while the application is frozen
            self._mark_freeze(state)
            # The commit point: persisted before the freeze, so a restarted operator
            # measures from here; refused if a cancel may have been written first.
            self.listener.commit(state)
        # TLS handshakes before the freeze, not after: the connections are opened now, while
        # the application still runs, and reused for the freeze and the revival.
        with self._agent(state.source) as source:
            source.healthz()
        try:
            with self._agent(state.target) as target:
                target.healthz()
        except AgentUnreachable as err:
            if first:
                raise  # nothing is frozen: the step is simply tried again later
            # A replay, frozen by an earlier attempt: the source takes it back (see _fail).
            raise MigrationError(f"{state.target} cannot be reached: {err}") from err
        # Resolved before the freeze: a name lookup is no part of the downtime.
        page_server = (
            address_of(self.agents.endpoint(state.source)) if state.memory != "freeze" else None
        )
        with self._agent(state.source) as source:
            if first:  # the application runs until this call; the downtime starts here
                self._mark_freeze(state)
            frozen = source.freeze(
                state.repository,
                state.id,
                checkpoint=state.mode == Mode.LIVE,
                memory=state.memory,
                page_server_address=page_server,
                stop_grace=state.stop_grace,
            )
        self.crash.reached("Cutover.frozen")
        state.postcopy = sorted(frozen.postcopy)
        state.stopped = list(frozen.stopped)
        state.killed = list(frozen.killed)
        state.checkpoint_seconds = sum(
            v for k, v in frozen.durations.items() if k.startswith("checkpoint:")
        )
        _steps(state, "freeze", frozen.durations)
        state.delta_bytes = self._push(state, "final")

    def _read_key(self) -> bytes | None:
        """The repository's key, read once per step: before the freeze when this step
        froze it, at the revival only when an operator restart replays Verifying."""
        if not self._key_read:
            self._key, self._key_read = self.repository_key(), True
        return self._key

    def _mark_freeze(self, state: MigrationState) -> None:
        """The cutover starts with the freeze request: cutoverAt and the downtime's start."""
        state.frozen_at_epoch = self.clock()
        state.cutover_at = timestamp(state.frozen_at_epoch)

    def _verify(self, state: MigrationState) -> None:
        with self._agent(state.target) as target:
            # force: the copy just received stays marked as the source's until it runs.
            revived = target.up(
                state.repository,
                self._read_key(),
                wait_answer=self.answer_timeout,
                force=True,
            )
        self.crash.reached("Verifying.answered")
        answered = self.clock()
        state.answered_at_epoch = answered
        _steps(state, "up", revived.durations)
        assert state.frozen_at_epoch is not None
        state.downtime_seconds = round(
            app_downtime(revived.revival, state.id, answered - state.frozen_at_epoch), 3
        )
        state.step_seconds["operator.other"] = rest_of_downtime(
            state.downtime_seconds, state.step_seconds
        )
        self.listener.answered(state)

    def _memory_arrived(self, state: MigrationState) -> bool:
        """Wait (up to POSTCOPY_STEP seconds) for the target's page fetches to end. The
        target decides: once it holds every page the source's copy is spent, whatever
        the source reports; a fetch that failed killed what it restored, and the source,
        whose dump failed with it, runs the application again (rolled back)."""
        deadline = time.monotonic() + POSTCOPY_STEP
        while True:
            with self._agent(state.target) as target:
                statuses = target.postcopy(state.repository, state.id)
            failed = [s for s in statuses if s.progress == PostCopyProgress.FAILED]
            if failed:
                raise MigrationError(
                    "post-copy failed: " + "; ".join(f"{s.container}: {s.error}" for s in failed)
                )
            received = sum(s.bytes_received or 0 for s in statuses)
            if received > state.postcopy_bytes or state.postcopy_progress_at is None:
                state.postcopy_bytes = max(received, state.postcopy_bytes)
                state.postcopy_progress_at = self.clock()
            elif postcopy_stalled(statuses, state.postcopy_progress_at, self.clock()):
                raise MigrationError(
                    f"post-copy received nothing for {POSTCOPY_STALL:.0f}s "
                    f"(at {human_bytes(state.postcopy_bytes)}): the link to the source is cut"
                )
            if statuses and all(s.progress == PostCopyProgress.DONE for s in statuses):
                assert state.answered_at_epoch is not None
                state.postcopy_seconds = round(self.clock() - state.answered_at_epoch, 3)
                state.postcopy_pages = sum(s.pages or 0 for s in statuses)
                state.postcopy_faulted_pages = sum(s.faulted_pages or 0 for s in statuses)
                return True
            if time.monotonic() > deadline:
                return False
            time.sleep(POSTCOPY_POLL)

    # --- cancels and failures ---------------------------------------------------------------
    def cancel(self, state: MigrationState) -> MigrationState:
        """The migration ended as cancelled, between steps (see _cancel)."""
        state = state.model_copy(deep=True)
        try:
            self._cancel(state)
        finally:
            self._close()
        return state

    def _cancel(self, state: MigrationState) -> None:
        """End a migration asked to stop before its commit point. The source never
        stopped; the transfer under way is freed on both ends; rounds the target already
        received stay there as a stale copy (marked as the source's), the base a later
        move to it sends only the difference to."""
        assert state.cancellable, state.phase
        phase = state.phase
        log.info(
            "migration cancelled",
            extra={"migration": state.id, "repository": state.repository, "phase": phase.value},
        )
        if phase == Phase.BULK_SYNC:
            self._forget_transfer(state, f"bulk{len(state.bulk_rounds) + 1}")
        state.reason = f"cancelled in {phase.value}: spec.machine is {state.source} again"
        state.phase, state.result, state.finished_at = Phase.CANCELLED, "Cancelled", now()

    def _fail(self, state: MigrationState, phase: Phase, reason: str) -> None:
        log.warning(
            "migration phase failed",
            extra={
                "migration": state.id,
                "repository": state.repository,
                "phase": phase.value,
                "reason": reason,
            },
        )
        if phase == Phase.FINALIZING:
            raise MigrationError(f"finalizing on {state.source} failed (will retry): {reason}")
        state.reason = f"{phase.value}: {reason}"
        if state.cancellable:  # before the commit point: the source never stopped
            state.phase, state.result = Phase.FAILED, "Failed"
            if phase == Phase.BULK_SYNC:
                self._forget_transfer(state, f"bulk{len(state.bulk_rounds) + 1}")
            state.finished_at = now()
            return
        # After the freeze: the target must not run it; the source takes it back.
        try:
            with self._agent(state.target) as target:
                # Marked stale: the copy the target received must never be taken for live.
                target.down(state.repository, moved_to=state.source)
        except AgentRefused as err:
            if err.status != 404:
                log.warning(
                    "target cleanup failed", extra={"migration": state.id, "error": err.message}
                )
        except AgentUnreachable as err:
            if phase != Phase.CUTOVER:
                # Verifying may have told it to start the application: resuming the source
                # now could run it twice. Kept frozen; the step is tried again.
                raise
            # In Cutover the target was never told to start it, and what it received is
            # marked as the source's until a migration's Verifying starts it: safe to resume.
            log.warning(
                "target unreachable; resuming on the source",
                extra={"migration": state.id, "target": state.target, "error": str(err)},
            )
        with self._agent(state.source) as source:
            source.resume(state.repository, state.id)
        state.phase, state.result = Phase.ROLLED_BACK, "RolledBack"
        self._forget_transfer(state, "final")
        state.finished_at = now()  # handled: the source runs it again

    def _forget_transfer(self, state: MigrationState, label: str) -> None:
        """An ended migration is never replayed, so its last transfer frees what both ends
        hold of it: the source's snapshot and the target's partial image, each as large
        as the image. Best effort: an agent that cannot be told sweeps it once idle."""
        tid = state.transfer_id(label)
        for machine in (state.source, state.target):
            try:
                with self._agent(machine) as agent:
                    agent.abort_transfer(tid, timeout=FORGET_TIMEOUT)
            except AgentError as err:
                log.info(
                    "transfer left to the agent's sweeper",
                    extra={"migration": state.id, "transfer": tid, "machine": machine,
                           "error": str(err)},
                )  # fmt: skip


def postcopy_stalled(statuses: list[PostCopyStatus], progress_at: float, now: float) -> bool:
    """Whether post-copy should be given up: a fetch still runs, and no fetch has
    received a byte for POSTCOPY_STALL seconds. A working fetch receives all the time
    until it ends (it pulls what the application has not asked for in the background);
    one whose link was cut silently would wait for TCP to give up, for many minutes,
    with the application stuck on the page it touched."""
    running = any(s.progress == PostCopyProgress.RUNNING for s in statuses)
    return running and now - progress_at > POSTCOPY_STALL


def address_of(endpoint: str) -> str:
    """The IP address of an agent's endpoint (https://HOST:PORT): where the target
    reaches the source's page servers."""
    host = urllib.parse.urlsplit(endpoint).hostname
    if not host:
        raise MigrationError(f"agent endpoint without a host: {endpoint!r}")
    return socket.gethostbyname(host)


def rest_of_downtime(downtime: float, steps: dict[str, float]) -> float:
    """The downtime no step accounts for: the calls between the operator and the agents
    (requests, answers, the agents' own bookkeeping around the timed steps) and, after an
    operator restart while frozen, the time it was away."""
    timed = steps_together({k: v for k, v in steps.items() if k != "operator.other"})
    return round(max(0.0, downtime - timed), 4)


def _steps(state: MigrationState, prefix: str, durations: dict[str, float]) -> None:
    state.step_seconds.update({f"{prefix}.{k}": round(v, 4) for k, v in durations.items()})
