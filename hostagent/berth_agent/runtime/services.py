"""Creating, starting, stopping and describing a repository's service containers."""

from __future__ import annotations

import logging
import socket
import time
from typing import Any

import docker
from docker.models.containers import Container

from berth_agent.errors import Conflict
from berth_agent.runtime import address
from berth_agent.runtime.images import ensure_image
from berth_agent.runtime.spec import bridge_name, repository_subnet
from berth_common.agent_api.models import ContainerStatus, PublishedPort
from berth_common.agent_api.services import (
    CHECKPOINT_LABEL,
    SERVICE_LABEL,
    RepositoryServices,
    ServiceSpec,
)

log = logging.getLogger("berth.agent.services")
NETWORK = "berth"


def ensure_network(client: docker.DockerClient, guid: str) -> None:
    """The repository's bridge network; its subnet is fixed by the GUID (see spec)."""
    if client.networks.list(names=[NETWORK]):
        return
    subnet = repository_subnet(guid)
    ipam = docker.types.IPAMConfig(pool_configs=[docker.types.IPAMPool(subnet=str(subnet))])
    client.networks.create(
        NETWORK,
        driver="bridge",
        ipam=ipam,
        options={"com.docker.network.bridge.name": bridge_name(guid)},
    )


def _create(client: docker.DockerClient, service: ServiceSpec) -> Container:
    ensure_image(client, service.image)
    return client.containers.create(
        service.image,
        command=service.command,
        name=service.name,
        environment=service.environment,
        labels=service.container_labels(),
        ports={f"{p.container}/{p.protocol}": p.host for p in service.ports},
        volumes={v.name: {"bind": v.path, "mode": "rw"} for v in service.volumes},
        network=NETWORK,
        hostname=service.name,
        restart_policy={"Name": "no"},  # the agent starts services; a daemon start must not
        stop_signal=service.stop_signal,
        detach=True,
    )


def service_containers(client: docker.DockerClient) -> list[Container]:
    return list(client.containers.list(all=True, filters={"label": SERVICE_LABEL}))


def start_services(
    client: docker.DockerClient,
    guid: str,
    services: RepositoryServices,
    skip: set[str] | None = None,
    uplink: str | None = None,
) -> list[str]:
    """Create missing containers and start the stopped ones (except `skip`). Idempotent.
    A repository with an address of its own needs the machine's uplink (runtime/address)."""
    ensure_network(client, guid)
    if services.address is not None:
        if uplink is None:
            raise Conflict(
                f"the repository has the address {services.address.cidr} of its own and this "
                "machine's agent has no uplink configured (agent.yaml: uplink)"
            )
        address.ensure_address_network(client, services.address, uplink)
    existing = {c.name: c for c in service_containers(client)}
    started = []
    for service in services.services:
        if skip and service.name in skip:
            continue
        try:
            container = existing.get(service.name)
            if container is None:
                container = _create(client, service)
                if services.address is not None and service.name == services.address_service:
                    address.attach(client, container, services.address)
            container.reload()
            if container.status != "running":
                container.start()
                started.append(service.name)
        except docker.errors.APIError as err:
            raise Conflict(
                f"service {service.name!r} could not start: {err.explanation or err}"
            ) from err
    if services.address is not None and services.address_service is not None:
        address.announce(client.containers.get(services.address_service), services.address)
    if started:
        log.info("services started", extra={"guid": guid, "services": started})
    return started


def stop_services(client: docker.DockerClient, timeout: int = 5) -> list[str]:
    stopped = []
    for container in service_containers(client):
        if container.status == "running":
            container.stop(timeout=timeout)
            stopped.append(container.name)
    return stopped


def published_ports(attrs: dict[str, Any]) -> list[PublishedPort]:
    """The container's ports published on the host, from its `docker inspect`: what a
    client outside reaches at the host's address."""
    found = []
    ports = (attrs.get("NetworkSettings") or {}).get("Ports") or {}
    for key, bindings in sorted(ports.items()):
        number, _, protocol = key.partition("/")
        for binding in bindings or []:
            if binding.get("HostIp", "") in ("", "0.0.0.0", "::") and binding.get("HostPort"):
                found.append(
                    PublishedPort(container=int(number), protocol=protocol or "tcp",
                                  host=int(binding["HostPort"]))
                )  # fmt: skip
    # docker lists a port once per address family; one entry per host port is enough
    unique = {(p.host, p.protocol): p for p in found}
    return [unique[k] for k in sorted(unique)]


def describe(container: Container) -> ContainerStatus:
    labels = container.labels or {}
    return ContainerStatus(
        name=container.name,
        id=container.short_id,
        image=container.attrs.get("Config", {}).get("Image"),
        state=container.status,
        checkpoint=labels.get(CHECKPOINT_LABEL) == "true",
        started_at=container.attrs.get("State", {}).get("StartedAt"),
        ports=published_ports(container.attrs) if container.status == "running" else [],
        address=address.address_of(container.attrs),
    )


def wait_for_ports(
    client: docker.DockerClient, services: RepositoryServices, timeout: float
) -> None:
    """Until every service's TCP ports accept connections at the container's own address.

    The container address, not the published host port: docker-proxy accepts on the host
    port even while nothing listens behind it. Short attempts: on the local bridge a
    listener answers in well under a millisecond, and a SYN sent while CRIU still holds
    the restored network locked is dropped — a long connect timeout (or the kernel's 1 s
    SYN retransmission) would then add its whole length to the downtime.
    """
    deadline = time.monotonic() + timeout
    for service in services.services:
        ports = [p.container for p in service.ports if p.protocol == "tcp"]
        if not ports:
            continue
        container = client.containers.get(service.name)
        address = container.attrs["NetworkSettings"]["Networks"][NETWORK]["IPAddress"]
        for port in ports:
            while True:
                try:
                    with socket.create_connection((address, port), timeout=0.02):
                        break
                except OSError:
                    if time.monotonic() > deadline:
                        raise Conflict(
                            f"service {service.name!r} port {port} did not answer "
                            f"within {timeout:.0f}s"
                        ) from None
                    time.sleep(0.002)
