"""The checkpoint endpoints of the Docker Engine API, which docker-py does not wrap (a
checkpoint is made with runc: see runc.py)."""

from __future__ import annotations

from typing import Any

import docker

RESTORE_TIMEOUT = 900.0  # seconds


def names(client: docker.DockerClient, container_id: str) -> list[str]:
    api = client.api
    listed: list[dict[str, Any]] = (
        api._result(api._get(api._url("/containers/{0}/checkpoints", container_id)), json=True)
        or []
    )
    return [c["Name"] for c in listed]


def delete(client: docker.DockerClient, container_id: str, name: str) -> None:
    api = client.api
    url = api._url("/containers/{0}/checkpoints/{1}", container_id, name)
    api._raise_for_status(api._delete(url))


def start_from(client: docker.DockerClient, container_id: str, name: str) -> None:
    api = client.api
    url = api._url("/containers/{0}/start", container_id)
    # A restore reads every page of a checkpoint: minutes for GiBs, past the client's 60 s.
    api._raise_for_status(api._post(url, params={"checkpoint": name}, timeout=RESTORE_TIMEOUT))
