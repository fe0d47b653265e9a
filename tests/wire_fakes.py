"""The agent's answers as fakes hand them out: the contract's models with what a test
leaves unsaid filled in (a repository running on its machine, nothing else of note)."""

from __future__ import annotations

from collections.abc import Sequence

from berth_common.agent_api.models import (
    ContainerStatus,
    Datastore,
    DockerStatus,
    Health,
    PublishedPort,
    RepositoryStatus,
)


def health(machine: str, *, free_bytes: int = 2**40, version: str = "test") -> Health:
    datastore = Datastore(size_bytes=2 * free_bytes, free_bytes=free_bytes)
    return Health(status="ok", machine=machine, version=version, datastore=datastore)


def container(
    name: str, state: str = "running", ports: Sequence[PublishedPort] = ()
) -> ContainerStatus:
    return ContainerStatus(
        name=name, id=name[:12], image=None, state=state, checkpoint=False, started_at=None,
        ports=list(ports),
    )  # fmt: skip


def repository(
    name: str,
    *,
    guid: str | None = None,
    mounted: bool = True,
    running: bool = True,
    containers: Sequence[ContainerStatus] = (),
    moved_to: str | None = None,
    used_bytes: int = 2**20,
) -> RepositoryStatus:
    guid = guid or f"g-{name}"
    return RepositoryStatus(
        guid=guid,
        name=name,
        size_bytes=2**30,
        created_at="2026-01-01T00:00:00Z",
        moved_to=moved_to,
        image_bytes=2**30,
        allocated_bytes=used_bytes,
        mounted=mounted,
        mount_path=f"/var/lib/berth/mounts/{guid}" if mounted else None,
        docker=DockerStatus(running=running, pid=42 if running else None, socket="/x.sock"),
        containers=list(containers),
        frozen_by=None,
        quiesced=False,
    )
