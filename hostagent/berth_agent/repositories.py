"""What the agent does with repositories, composed from the store, the per-repository
dockerd, the services and the checkpoint code. The HTTP API and the CLI both call this."""

from __future__ import annotations

import fcntl
import logging
import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import docker
import requests

from berth_agent.apps import postgres, pulse, redis
from berth_agent.checkpoint import docker_api
from berth_agent.checkpoint import freeze as freezing
from berth_agent.checkpoint.postcopy import (
    LazyDump,
    abort_dump,
    fetch_status,
    read_status,
    stop_all,
)
from berth_agent.checkpoint.runc import RuncCheckpointer
from berth_agent.config import AgentConfig
from berth_agent.errors import Conflict, InvalidRequest, NotFound, Unsupported
from berth_agent.runtime import neighbours
from berth_agent.runtime.bridge import remove_bridge
from berth_agent.runtime.dockerd import DaemonPaths, RepositoryDaemon
from berth_agent.runtime.services import (
    NETWORK,
    describe,
    service_containers,
    start_services,
    wait_for_ports,
)
from berth_agent.runtime.spec import bridge_name
from berth_agent.store.store import META_DIR, RepositoryStore
from berth_agent.transfer.bases import BaseStore
from berth_common.agent_api.models import (
    ContainerStatus,
    DockerStatus,
    FreezeRecord,
    MemoryMode,
    PostCopyProgress,
    PostCopyStatus,
    RepositoryRecord,
    RepositoryStatus,
    Revival,
)
from berth_common.agent_api.services import RepositoryAddress, RepositoryServices
from berth_common.crash import CrashPoints
from berth_common.process import run

log = logging.getLogger("berth.agent.repositories")
# The built-in applications a repository can be created with, by name (spec.template.app).
TEMPLATES: dict[str, Callable[[], RepositoryServices]] = {
    "pulse": pulse.services,
    "postgres": postgres.services,
    "redis": redis.services,
    "empty": lambda: RepositoryServices(),
}


class Repositories:
    def __init__(self, config: AgentConfig) -> None:
        self.config = config
        self.store = RepositoryStore(config.data_dir)
        # Test only: the fault tests name a point in this file to kill the agent there.
        self.crash = CrashPoints(config.data_dir / "crash-at" if config.fault_injection else None)

    @contextmanager
    def _locked(self, guid: str) -> Iterator[None]:
        """One operation at a time per repository, across threads and processes (the
        server and an admin command on the same host)."""
        self.config.run_dir.mkdir(parents=True, exist_ok=True)
        with open(self.config.run_dir / f"{guid}.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            yield

    def daemon(self, guid: str) -> RepositoryDaemon:
        paths = DaemonPaths(
            self.config.run_dir / guid,
            self.store.docker_root(guid),
            self.config.data_dir / "tmp" / guid,
            self.config.run_dir / "bin",
        )
        # Where the repository is mounted its services say how its dockerd runs; where it
        # is not, the daemon is only stopped or asked whether it runs.
        services = self.store.mounted_services(guid)
        remapped = services is not None and services.user_namespace
        return RepositoryDaemon(paths, self.config.dockerd, user_namespace=remapped)

    def _postcopy_dir(self, guid: str, migration_id: str) -> Path:
        return self.config.run_dir / guid / "postcopy" / migration_id

    def _postcopy_plan(
        self, guid: str, migration_id: str, address: str = "", mode: MemoryMode = MemoryMode.FREEZE
    ) -> freezing.PostCopyPlan:
        return freezing.PostCopyPlan(
            work_root=self._postcopy_dir(guid, migration_id),
            tls=self.config.tls,
            address=address,
            mode=mode,
        )

    # --- lifecycle -------------------------------------------------------------------
    def create(
        self,
        name: str,
        size: str,
        *,
        template: str | None = None,
        services: RepositoryServices | None = None,
        address: RepositoryAddress | None = None,
        guid: str | None = None,
        key: bytes | None = None,
    ) -> RepositoryRecord:
        if template is not None and services is not None:
            raise InvalidRequest("give either a template or services, not both")
        if template is not None:
            if template not in TEMPLATES:
                raise InvalidRequest(
                    f"unknown template {template!r}; known: " + ", ".join(sorted(TEMPLATES))
                )
            services = TEMPLATES[template]()
        services = services or RepositoryServices()
        if address is not None:
            if self.config.uplink is None:
                raise Unsupported(
                    f"address {address.cidr}: this machine's agent has no uplink configured "
                    "(agent.yaml: uplink), so no repository can have an address of its own here"
                )
            try:
                services = services.with_address(address)
            except ValueError as err:
                raise InvalidRequest(str(err)) from None
        return self.store.create(name, size, services, guid=guid, key=key)

    def up(
        self,
        ref: str,
        *,
        key: bytes | None = None,
        wait_answer: float | None = None,
        force: bool = False,
    ) -> dict[str, float]:
        """Mount, start the dockerd, restore what a freeze left, start the rest; with
        wait_answer, also wait (up to that many seconds) until published ports answer."""
        record = self.store.find(ref)
        if record.moved_to and not force:
            raise Conflict(
                f"repository {record.name!r} moved to {record.moved_to}; this copy is stale "
                "or was received and not yet started by its migration (start it anyway with "
                "force, once it runs nowhere else)"
            )
        durations: dict[str, float] = {}
        with self._locked(record.guid):
            t = time.monotonic()
            self.store.mount(record.guid, key=key)
            durations["mount"] = time.monotonic() - t
            t = time.monotonic()
            daemon = self.daemon(record.guid)
            daemon.start()
            durations["dockerd"] = time.monotonic() - t
            client = daemon.client()
            try:
                meta = self.store.mount_path(record.guid) / META_DIR
                frozen = freezing.read_record(meta)
                self.crash.reached("up.restoring")
                fetch = self._postcopy_plan(record.guid, frozen.migration_id) if frozen else None
                durations.update(freezing.thaw(client, daemon.checkpointer(), meta, fetch))
                self.crash.reached("up.restored")
                if frozen:
                    daemon.remove_checkpoint_copies_later()
                    t = time.monotonic()
                    neighbours.write_entries(
                        client,
                        frozen.checkpointed + frozen.stopped,
                        {NETWORK: bridge_name(record.guid)},
                    )
                    durations["neighbours"] = time.monotonic() - t
                t = time.monotonic()
                start_services(
                    client,
                    record.guid,
                    self.store.services(record.guid),
                    skip=set(frozen.checkpointed) if frozen else None,
                    uplink=self.config.uplink,
                )
                durations["services"] = time.monotonic() - t
                if wait_answer:
                    t = time.monotonic()
                    wait_for_ports(client, self.store.services(record.guid), wait_answer)
                    durations["answer"] = time.monotonic() - t
                freezing.answered(meta)
            finally:
                client.close()
        if record.moved_to:
            self.store.set_moved_to(record.guid, None)
        log.info("repository up", extra={"repository": record.name, "durations": durations})
        return durations

    def revival(self, ref: str) -> Revival | None:
        """The instants of the repository's last thaw (mounted: they are in its image)."""
        record = self.store.find(ref)
        if not self.store.is_mounted(record.guid):
            return None
        return freezing.read_revival(self.store.mount_path(record.guid) / META_DIR)

    def freeze(
        self,
        ref: str,
        migration_id: str,
        *,
        checkpoint: bool = True,
        memory: MemoryMode = MemoryMode.FREEZE,
        page_server_address: str | None = None,
        stop_grace: int | None = None,
    ) -> FreezeRecord:
        """Checkpoint labelled containers (stop them all when checkpoint is False), stop
        the others, then quiesce the filesystem so a snapshot of the image is consistent.
        The dockerd keeps running: stopping it costs a second, off the critical path.
        Containers whose memory moves after the freeze (memory) keep it here, served on
        page_server_address (this host's, as the target reaches it)."""
        if memory != MemoryMode.FREEZE and not page_server_address:
            raise InvalidRequest(f"memory {memory.value} needs the page server's address")
        record = self.store.find(ref)
        meta = self.store.mount_path(record.guid) / META_DIR
        with self._locked(record.guid):
            existing = freezing.read_record(meta) if self.store.is_mounted(record.guid) else None
            if existing is not None and existing.migration_id == migration_id:
                self._quiesce(record.guid)  # a replay: what the first call did, as it was
                return existing
            daemon = self.daemon(record.guid)
            if not daemon.running():
                raise Conflict(f"repository {record.name!r} is not running")
            client = daemon.client()
            try:
                plan = None
                if memory != MemoryMode.FREEZE and page_server_address:
                    plan = self._postcopy_plan(
                        record.guid, migration_id, page_server_address, memory
                    )
                frozen = freezing.freeze(
                    client,
                    daemon.checkpointer(),
                    meta,
                    migration_id,
                    checkpoint=checkpoint,
                    postcopy=plan,
                    stop_grace=stop_grace,
                )
            finally:
                client.close()
            # The record is written before the filesystem freezes (a write after would
            # block), so a replay returns exactly what this call returns.
            t = time.monotonic()
            self._quiesce(record.guid)
            frozen.durations["quiesce"] = time.monotonic() - t
            log.info(
                "filesystem quiesced",
                extra={"repository": record.name, "seconds": round(frozen.durations["quiesce"], 4)},
            )
            self.crash.reached("freeze.frozen")
            return frozen

    def resume(self, ref: str, migration_id: str) -> dict[str, float]:
        """Undo a freeze here (the rollback of a failed cutover): thaw the filesystem,
        restore the checkpointed containers and start the stopped ones."""
        record = self.store.find(ref)
        with self._locked(record.guid):
            self._unquiesce(record.guid)
            meta = self.store.mount_path(record.guid) / META_DIR
            frozen = freezing.read_record(meta)
            if frozen is not None and frozen.migration_id != migration_id:
                raise Conflict(
                    f"repository {record.name!r} is frozen by migration "
                    f"{frozen.migration_id}, not {migration_id}"
                )
            daemon = self.daemon(record.guid)
            client = daemon.client()
            try:
                if frozen is not None and frozen.postcopy:
                    self._abort_dumps(record.guid, frozen, client, daemon.checkpointer())
                durations = freezing.thaw(client, daemon.checkpointer(), meta)
                freezing.answered(meta)
            finally:
                client.close()
            daemon.remove_checkpoint_copies_later()
        log.info("repository resumed", extra={"repository": record.name, "migration": migration_id})
        return durations

    def _abort_dumps(
        self,
        guid: str,
        frozen: FreezeRecord,
        client: docker.DockerClient,
        checkpointer: RuncCheckpointer,
    ) -> None:
        """A resume while the source still serves pages: the target gave the application
        back, so the dumps stop and their containers run on here."""
        root = self._postcopy_dir(guid, frozen.migration_id)
        for name in frozen.postcopy:
            container_id = client.containers.get(name).id
            if abort_dump(root / name, checkpointer.resume_argv(container_id)):
                log.warning(
                    "post-copy dump aborted",
                    extra={"migration": frozen.migration_id, "container": name},
                )

    def postcopy(self, ref: str, migration_id: str) -> list[PostCopyStatus]:
        """How the post-copy of a migration stands here, per container: the page servers
        on the source, the page fetches on the target. Once every fetch here is done,
        the checkpoint the fetches read from is removed."""
        record = self.store.find(ref)
        root = self._postcopy_dir(record.guid, migration_id)
        if not root.is_dir():
            raise NotFound(f"no post-copy of migration {migration_id} on this host")
        statuses = [
            read_status(d.name, d, LazyDump.LOG) if (d / "images").exists()
            else fetch_status(d.name, d)
            for d in sorted(root.iterdir())
            if d.is_dir()
        ]  # fmt: skip
        fetched = [s.container for s in statuses if not (root / s.container / "images").exists()]
        if fetched and all(s.progress == PostCopyProgress.DONE for s in statuses):
            self._drop_checkpoints(record.guid, fetched, freezing.checkpoint_name(migration_id))
        return statuses

    def _drop_checkpoints(self, guid: str, containers: list[str], name: str) -> None:
        daemon = self.daemon(guid)
        if not daemon.running():
            return
        client = daemon.client()
        try:
            for container_name in containers:
                container = client.containers.get(container_name)
                if name in docker_api.names(client, container.id):
                    docker_api.delete(client, container.id, name)
        finally:
            client.close()

    def _frozen_marker(self, guid: str) -> Path:
        return self.config.run_dir / f"{guid}.fsfrozen"

    def _quiesce(self, guid: str) -> None:
        marker = self._frozen_marker(guid)
        if marker.exists():
            return  # a replay: already frozen
        run(["fsfreeze", "--freeze", str(self.store.mount_path(guid))])
        marker.touch()

    def _unquiesce(self, guid: str) -> None:
        marker = self._frozen_marker(guid)
        if marker.exists():
            run(["fsfreeze", "--unfreeze", str(self.store.mount_path(guid))], check=False)
            marker.unlink()

    def down(self, ref: str, *, moved_to: str | None = None) -> dict[str, float]:
        """Stop the dockerd (its containers stop with it) and unmount. Idempotent.
        moved_to marks this copy stale: the repository now runs on that machine."""
        record = self.store.find(ref)
        durations: dict[str, float] = {}
        with self._locked(record.guid):
            self._unquiesce(record.guid)
            t = time.monotonic()
            # A fetch stuck on a cut link, or a dump left behind: nothing runs from here.
            stopped = stop_all(self.config.run_dir / record.guid / "postcopy")
            if stopped:
                log.warning("post-copy stopped", extra={"repository": record.name,
                                                        "containers": stopped})  # fmt: skip
            self.daemon(record.guid).stop()
            remove_bridge(record.guid)
            durations["dockerd"] = time.monotonic() - t
            t = time.monotonic()
            self.store.unmount(record.guid)
            durations["unmount"] = time.monotonic() - t
            # What post-copy kept on the host (images, logs) once nothing runs from it.
            shutil.rmtree(self.config.run_dir / record.guid / "postcopy", ignore_errors=True)
            if moved_to:
                self.store.set_moved_to(record.guid, moved_to)
        log.info("repository down", extra={"repository": record.name, "durations": durations})
        return durations

    def delete(self, ref: str, confirm: str) -> RepositoryRecord:
        record = self.store.find(ref)
        if confirm != record.name:
            raise InvalidRequest(f"deleting {record.name!r} needs confirm={record.name!r}")
        with self._locked(record.guid):
            if self.daemon(record.guid).running():
                raise Conflict(f"repository {record.name!r} is running; take it down first")
            deleted = self.store.delete(record.guid)
            # The base kept for the next delta is as large as the image: it goes too.
            BaseStore(self.config.data_dir).drop(record.guid)
            return deleted

    # --- inspection ------------------------------------------------------------------
    def status(self, ref: str) -> RepositoryStatus:
        record = self.store.find(ref)
        mounted = self.store.is_mounted(record.guid)
        daemon = self.daemon(record.guid)
        pid = daemon.pid()
        containers: list[ContainerStatus] = []
        frozen = None
        problem = None
        if pid is not None:
            client = daemon.client(timeout=10)
            try:
                containers = [describe(c) for c in service_containers(client)]
            except (docker.errors.DockerException, requests.RequestException) as err:
                # One unresponsive dockerd must not hide every other repository here.
                problem = f"dockerd not answering: {type(err).__name__}"
                log.warning(
                    "repository status", extra={"repository": record.name, "error": problem}
                )
            finally:
                client.close()
        if mounted:
            frozen = freezing.read_record(self.store.mount_path(record.guid) / META_DIR)
        image_bytes, allocated_bytes = self.store.usage(record.guid)
        return RepositoryStatus(
            **record.model_dump(),
            image_bytes=image_bytes,
            allocated_bytes=allocated_bytes,
            mounted=mounted,
            mount_path=str(self.store.mount_path(record.guid)) if mounted else None,
            docker=DockerStatus(
                running=pid is not None, pid=pid, socket=str(daemon.paths.socket), error=problem
            ),
            containers=containers,
            frozen_by=frozen.migration_id if frozen else None,
            quiesced=self._frozen_marker(record.guid).exists(),
        )

    def logs(self, ref: str, service: str, tail: int = 100) -> list[str]:
        """The service's last log lines, each prefixed by Docker's RFC 3339 timestamp."""
        record = self.store.find(ref)
        daemon = self.daemon(record.guid)
        if not daemon.running():
            raise Conflict(f"repository {record.name!r} is not running here")
        client = daemon.client(timeout=10)
        try:
            try:
                container = client.containers.get(service)
            except docker.errors.NotFound:
                raise NotFound(f"repository {record.name!r} has no service {service!r}") from None
            raw: bytes = container.logs(tail=tail, timestamps=True)
        finally:
            client.close()
        return raw.decode(errors="replace").splitlines()

    def running_daemon(self, name: str) -> RepositoryDaemon:
        """The dockerd of the repository called name (never a GUID: a session grant names
        repositories by name), where it runs on this machine."""
        record = next((r for r in self.store.list() if r.name == name), None)
        if record is None:
            raise NotFound(f"repository {name!r} does not exist on this host")
        daemon = self.daemon(record.guid)
        if not daemon.running():
            moved = f" (it moved to {record.moved_to})" if record.moved_to else ""
            raise Conflict(f"repository {name} is not running on {self.config.name}{moved}")
        return daemon

    def list(self) -> list[RepositoryStatus]:
        return [self.status(r.guid) for r in self.store.list()]
