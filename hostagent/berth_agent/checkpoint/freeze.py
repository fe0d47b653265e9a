"""Checkpoint a repository's labelled containers and stop the rest; restore them later.

What was frozen is recorded inside the repository (.berth/checkpoint.json), so the
record travels with the image and any host that mounts it knows what to restore.
Both operations are keyed by the migration id and safe to repeat.
"""

from __future__ import annotations

import logging
import shutil
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import docker
from docker.models.containers import Container

from berth_agent.checkpoint import docker_api
from berth_agent.checkpoint.criu import criu_log_excerpt
from berth_agent.checkpoint.memory import moves_after_freeze, resident_anon_bytes
from berth_agent.checkpoint.postcopy import LazyDump, PageFetch
from berth_agent.checkpoint.runc import RuncCheckpointer
from berth_agent.config import TLSConfig
from berth_agent.errors import Refusal
from berth_agent.runtime.services import service_containers
from berth_common.agent_api.models import FreezeRecord, MemoryMode, PageServer, Revival
from berth_common.agent_api.services import CHECKPOINT_LABEL
from berth_common.process import alive

log = logging.getLogger("berth.agent.checkpoint")
RECORD = "checkpoint.json"
REVIVAL = "revival.json"  # the last thaw's instants (Revival), kept until the next one
RESTORE_ATTEMPTS = 6
DOCKER_STOP_TIMEOUT = 10  # seconds: dockerd's own default
KILLED_EXIT_CODE = 137  # 128 + SIGKILL: what a container killed at the end of its grace shows


@dataclass(frozen=True)
class PostCopyPlan:
    """How this host takes part in post-copy: where its page servers listen (source) or
    its page fetches run (target), and the certificates they speak TLS with."""

    work_root: Path  # on the host: <run-dir>/<guid>/postcopy/<migration>; a folder per container
    tls: TLSConfig
    address: str = ""  # the source's: where the target reaches its page servers
    mode: MemoryMode = MemoryMode.FREEZE


def checkpoint_name(migration_id: str) -> str:
    return f"berth-{migration_id}"


def _record_path(meta_dir: Path) -> Path:
    return meta_dir / RECORD


def read_record(meta_dir: Path) -> FreezeRecord | None:
    path = _record_path(meta_dir)
    return FreezeRecord.model_validate_json(path.read_text()) if path.exists() else None


def write_record(meta_dir: Path, record: FreezeRecord) -> None:
    tmp = _record_path(meta_dir).with_suffix(".tmp")
    tmp.write_text(record.model_dump_json(indent=2))
    tmp.replace(_record_path(meta_dir))


def read_revival(meta_dir: Path) -> Revival | None:
    path = meta_dir / REVIVAL
    return Revival.model_validate_json(path.read_text()) if path.exists() else None


def write_revival(meta_dir: Path, revival: Revival) -> None:
    tmp = (meta_dir / REVIVAL).with_suffix(".tmp")
    tmp.write_text(revival.model_dump_json(indent=2))
    tmp.replace(meta_dir / REVIVAL)


def answered(meta_dir: Path) -> Revival | None:
    """The repository's services answer: the first time since its last thaw, that
    moment is the end of the application's downtime (a replayed up keeps it)."""
    revival = read_revival(meta_dir)
    if revival is not None and revival.answered_at is None:
        revival = revival.model_copy(update={"answered_at": time.time()})
        write_revival(meta_dir, revival)
    return revival


def freeze(
    client: docker.DockerClient,
    checkpointer: RuncCheckpointer,
    meta_dir: Path,
    migration_id: str,
    checkpoint: bool = True,
    postcopy: PostCopyPlan | None = None,
    stop_grace: int | None = None,
) -> FreezeRecord:
    """Checkpoint every running container labelled for it; stop every other one (all of
    them for a cold migration, checkpoint=False) with its own stop signal, killed after
    stop_grace seconds (None: the container's own stop timeout, docker's 10 s if it has
    none). With a post-copy plan, the containers its mode picks keep their memory here,
    served to the target after the freeze."""
    existing = read_record(meta_dir)
    if existing is not None:
        if existing.migration_id == migration_id and existing.complete:
            return existing  # already frozen for this migration: a replay
        if existing.migration_id == migration_id:
            raise Refusal(
                f"the freeze for migration {migration_id} failed part way; resume it first"
            )
        raise Refusal(
            f"repository is frozen by migration {existing.migration_id}; "
            "restore it before freezing it again"
        )
    record = FreezeRecord(migration_id=migration_id, checkpoint=checkpoint_name(migration_id))
    running = [c for c in service_containers(client) if c.status == "running"]
    to_checkpoint = [
        c for c in running if checkpoint and (c.labels or {}).get(CHECKPOINT_LABEL) == "true"
    ]
    to_stop = [c for c in running if c not in to_checkpoint]
    lazy = {c.name for c in to_checkpoint if postcopy and _after_freeze(client, c, postcopy.mode)}

    def checkpoint_one(container: Container) -> None:
        try:
            if container.name in lazy:
                assert postcopy is not None
                record.postcopy[container.name] = _dump_lazily(
                    checkpointer, container, record.checkpoint, postcopy
                )
            else:
                checkpointer.checkpoint(container.id, record.checkpoint)
        except Refusal as err:
            raise Refusal(f"checkpoint of {container.name} failed: {err}") from err

    def stop_one(container: Container) -> None:
        if _stop(client, container, stop_grace):
            record.killed.append(container.name)

    # All at once: the repository's containers stop as close together as they can (an
    # app and its database), and the freeze lasts as long as the slowest, not the sum.
    record.frozen_at = time.time()
    outcomes = all_at_once(
        [(f"checkpoint:{c.name}", partial(checkpoint_one, c)) for c in to_checkpoint]
        + [(f"stop:{c.name}", partial(stop_one, c)) for c in to_stop]
    )
    done = {name for name, outcome in outcomes.items() if outcome.error is None}
    record.durations = {name: outcome.seconds for name, outcome in outcomes.items()}
    record.checkpointed = [c.name for c in to_checkpoint if f"checkpoint:{c.name}" in done]
    record.stopped = [c.name for c in to_stop if f"stop:{c.name}" in done]
    try:
        _raise_first(outcomes)
        # A dumped container's processes are gone once runc returns; dockerd records the
        # exit 0.1 s later, writing into the filesystem about to be frozen. Not waiting
        # for it was measured slower: the copy then holds a "running" container, which
        # the target's dockerd cleans up at start as after a crash (+0.13-0.18 s to its
        # start, +0.03 s to the restore, against 0.1 s saved here).
        for container in to_checkpoint:
            if container.name in lazy:
                continue  # frozen until its pages have gone: dockerd sees the exit then
            started = time.monotonic()
            _wait_exited(client, container.id)
            record.durations[f"checkpoint:{container.name}"] += time.monotonic() - started
    except Exception:
        # What did freeze is recorded, so that resume revives it (a failed dump leaves
        # its container running); marked incomplete, so that a replay does not take the
        # freeze for done.
        record.complete = False
        write_record(meta_dir, record)
        raise
    write_record(meta_dir, record)
    log.info(
        "repository frozen",
        extra={
            "migration": migration_id,
            "checkpointed": record.checkpointed,
            "stopped": record.stopped,
            "killed": record.killed,
        },
    )
    return record


def grace_seconds(container_config: dict[str, Any], override: int | None) -> int:
    """How long a stop waits for the container to exit before it kills it: the
    placement's grace period, else the container's own stop timeout, else docker's 10 s."""
    if override is not None:
        return override
    own = container_config.get("StopTimeout")
    return int(own) if own is not None else DOCKER_STOP_TIMEOUT


def _stop(client: docker.DockerClient, container: Container, grace: int | None) -> bool:
    """Stop the container with its stop signal (dockerd sends the one it was created
    with) and its grace period; True if it had to be killed when that ran out."""
    seconds = grace_seconds(container.attrs.get("Config") or {}, grace)
    container.stop(timeout=seconds)
    state = _wait_exited(client, container.id)
    return bool(state.get("ExitCode") == KILLED_EXIT_CODE and not state.get("OOMKilled"))


def _after_freeze(client: docker.DockerClient, container: Container, mode: MemoryMode) -> bool:
    resident = None
    if mode == MemoryMode.AUTO:
        pid = int(client.api.inspect_container(container.id)["State"]["Pid"])
        resident = resident_anon_bytes(pid) if pid > 0 else None
    return moves_after_freeze(mode, resident)


def _dump_lazily(
    checkpointer: RuncCheckpointer, container: Container, name: str, plan: PostCopyPlan
) -> PageServer:
    """Dump all but the container's memory on the host (CRIU writes there until its last
    page has gone, long after the repository's filesystem is frozen), then copy those
    images into the checkpoint folder, which travels with the repository."""
    dump = LazyDump.start(
        runc=checkpointer.runc,
        runc_root=checkpointer.runc_root,
        container=container.name,
        container_id=container.id,
        work_dir=plan.work_root / container.name,
        address=plan.address,
        tls=plan.tls,
    )
    shutil.copytree(dump.image_dir, checkpointer.image_dir(container.id, name), dirs_exist_ok=True)
    return dump.server


@dataclass
class Outcome:
    """What a piece of work run by all_at_once took, and how it failed if it did."""

    seconds: float
    error: Exception | None = None


def all_at_once(work: Sequence[tuple[str, Callable[[], None]]]) -> dict[str, Outcome]:
    """Run each named piece of work in a thread of its own, until all have ended."""
    if len(work) <= 1:  # no thread for one container, the common case
        return {name: _run(job) for name, job in work}
    with ThreadPoolExecutor(max_workers=len(work)) as pool:
        futures = {name: pool.submit(_run, job) for name, job in work}
    return {name: future.result() for name, future in futures.items()}


def _run(job: Callable[[], None]) -> Outcome:
    started = time.monotonic()
    try:
        job()
    except Exception as err:  # reported by the caller, with every other outcome
        return Outcome(time.monotonic() - started, err)
    return Outcome(time.monotonic() - started)


def _raise_first(outcomes: dict[str, Outcome]) -> None:
    for outcome in outcomes.values():
        if outcome.error is not None:
            raise outcome.error


def _wait_exited(
    client: docker.DockerClient, container_id: str, timeout: float = 30
) -> dict[str, Any]:
    """Until dockerd has handled the container's exit (a stop, or a checkpoint before a
    restore): its state written into the data-root, which it returns. Inspect takes the
    container's lock, which dockerd holds while it writes, so it answers only once the
    state is written."""
    deadline = time.monotonic() + timeout
    while (state := client.api.inspect_container(container_id)["State"])["Running"]:
        if time.monotonic() > deadline:
            raise Refusal(f"container {container_id[:12]} still running {timeout:.0f}s after")
        time.sleep(0.005)
    exited: dict[str, Any] = state
    return exited


def thaw(
    client: docker.DockerClient,
    checkpointer: RuncCheckpointer,
    meta_dir: Path,
    fetch: PostCopyPlan | None = None,
) -> dict[str, float]:
    """Restore what freeze() checkpointed and start what it stopped; then forget the record.
    With fetch (on the target), a container whose pages stayed at the source is restored
    with a page fetch from there; without (the source resuming), such a container must
    still run here: its memory may have moved.

    docker 20.10 sometimes refuses the first restore with "content sha256:... already
    exists" (containerd's content store keeps the upload of the failed attempt); the same
    request then succeeds, so such a failure is retried.
    """
    record = read_record(meta_dir)
    if record is None:
        return {}

    def restore_one(name: str) -> None:
        container = client.containers.get(name)
        if _runs(client, container.id):
            return
        if name in record.postcopy:
            if fetch is None:
                raise Refusal(
                    f"{name} no longer runs here and its memory went to the target after "
                    "the freeze: it can only run there"
                )
            PageFetch.start(
                container=name,
                image_dir=checkpointer.image_dir(container.id, record.checkpoint),
                work_dir=fetch.work_root / name,
                server=record.postcopy[name],
                tls=fetch.tls,
                kill_on_failure=checkpointer.kill_argv(container.id),
            )
        _restore_with_retry(client, container.id, record.checkpoint)

    def start_one(name: str) -> None:
        container = client.containers.get(name)
        if container.status != "running":
            container.start()

    # Restored all at once, as they were frozen; then the others, which may need them.
    restored = all_at_once([(f"restore:{n}", partial(restore_one, n)) for n in record.checkpointed])
    _raise_first(restored)  # the record stays: thaw is tried again as a whole
    started = all_at_once([(f"start:{n}", partial(start_one, n)) for n in record.stopped])
    _raise_first(started)
    durations = {name: outcome.seconds for name, outcome in {**restored, **started}.items()}
    for name in record.checkpointed:
        if name in record.postcopy and fetch is not None:
            continue  # its page fetch reads the images until the last page: dropped then
        container = client.containers.get(name)
        if record.checkpoint in docker_api.names(client, container.id):
            docker_api.delete(client, container.id, record.checkpoint)
    # Before the record goes: the freeze's instant, for the answer that ends the downtime.
    write_revival(meta_dir, Revival(migration_id=record.migration_id, frozen_at=record.frozen_at))
    _record_path(meta_dir).unlink()
    log.info(
        "repository restored",
        extra={
            "migration": record.migration_id,
            "restored": record.checkpointed,
            "started": record.stopped,
        },
    )
    return durations


def _runs(client: docker.DockerClient, container_id: str) -> bool:
    """Whether the container runs: restored already (thaw is replayed), not merely still
    taken for running by a dockerd that has not handled its checkpoint's exit yet (a
    resume right after the thaw): then wait until it has, as a restore needs."""
    state = client.api.inspect_container(container_id)["State"]
    if state["Running"] and alive(int(state["Pid"])):
        return True
    if state["Running"]:
        _wait_exited(client, container_id)
    return False


def _restore_with_retry(client: docker.DockerClient, container_id: str, checkpoint: str) -> None:
    for attempt in range(1, RESTORE_ATTEMPTS + 1):
        try:
            docker_api.start_from(client, container_id, checkpoint)
            return
        except docker.errors.APIError as err:
            if "already exists" not in str(err) or attempt == RESTORE_ATTEMPTS:
                raise Refusal(
                    f"restore of {container_id[:12]} failed: {err}{criu_log_excerpt(str(err))}"
                ) from err
            log.warning(
                "restore retried",
                extra={"container": container_id[:12], "attempt": attempt, "error": str(err)},
            )
            time.sleep(0.05 * (attempt - 1))  # the first retry at once: it is downtime
