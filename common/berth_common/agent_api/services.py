"""What a repository runs: its services, stored inside the repository so they move with
it, and sent to the agent by whoever creates the repository (CreateRequest.services)."""

from __future__ import annotations

import ipaddress
import re

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

CHECKPOINT_LABEL = "rediacc.checkpoint"  # Rediacc's label, kept for compatibility
SERVICE_LABEL = "berth.dev/service"
_SERVICE_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")


class PortSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    container: int = Field(ge=1, le=65535)
    host: int = Field(ge=1, le=65535)
    protocol: str = Field(default="tcp", pattern="^(tcp|udp)$")


class VolumeSpec(BaseModel):
    """A named volume of the repository's dockerd, so its data lives in the repository."""

    model_config = ConfigDict(extra="forbid")
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_.-]{0,62}$")
    path: str = Field(pattern=r"^/")


class ServiceSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    image: str
    command: list[str] | None = None
    environment: dict[str, str] = Field(default_factory=dict)
    labels: dict[str, str] = Field(default_factory=dict)
    checkpoint: bool = Field(
        default=False, description="CRIU-checkpoint this container on a move (else restart)"
    )
    ports: list[PortSpec] = Field(default_factory=list)
    volumes: list[VolumeSpec] = Field(default_factory=list)
    stop_signal: str | None = Field(
        None,
        pattern=r"^(SIG)?[A-Z][A-Z0-9+-]*$|^[1-9][0-9]?$",
        description="the signal a stop sends (default: the image's STOPSIGNAL, else SIGTERM)",
    )

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not _SERVICE_NAME.match(value):
            raise ValueError("service name: lowercase letters, digits, '-' and '_'")
        return value

    def container_labels(self) -> dict[str, str]:
        labels = {**self.labels, SERVICE_LABEL: self.name}
        if self.checkpoint:
            labels[CHECKPOINT_LABEL] = "true"
        return labels


class RepositoryAddress(BaseModel):
    """An IPv4 address of the repository's own on the machines' shared network segment:
    its service answers there, without NAT, on whichever machine it runs, so a client's
    connection survives a move (runtime/address.py)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    cidr: str = Field(
        pattern=r"^[0-9]{1,3}(\.[0-9]{1,3}){3}/[0-9]{1,2}$",
        description="the address and its segment's prefix, e.g. 10.1.0.200/24",
    )
    service: str | None = Field(
        None, description="the service that holds it; default: the repository's only one"
    )
    gateway: str | None = Field(
        None,
        pattern=r"^[0-9]{1,3}(\.[0-9]{1,3}){3}$",
        description="the segment's router; default: its first address",
    )

    @property
    def interface(self) -> ipaddress.IPv4Interface:
        return ipaddress.IPv4Interface(self.cidr)

    @property
    def ip(self) -> ipaddress.IPv4Address:
        return self.interface.ip

    @property
    def network(self) -> ipaddress.IPv4Network:
        return self.interface.network

    @property
    def gateway_address(self) -> ipaddress.IPv4Address:
        if self.gateway is not None:
            return ipaddress.IPv4Address(self.gateway)
        return next(self.network.hosts())

    @model_validator(mode="after")
    def _a_host_of_its_segment(self) -> RepositoryAddress:
        try:
            interface = ipaddress.IPv4Interface(self.cidr)
            gateway = self.gateway_address
        except ValueError as err:
            raise ValueError(f"address {self.cidr!r}: {err}") from None
        network = interface.network
        if interface.ip in (network.network_address, network.broadcast_address):
            raise ValueError(f"address {self.cidr}: the segment's own or broadcast address")
        if gateway not in network:
            raise ValueError(f"gateway {gateway} is not on the segment {network}")
        if gateway == interface.ip:
            raise ValueError(f"address {self.cidr} is the segment's gateway")
        return self


class RepositoryServices(BaseModel):
    model_config = ConfigDict(extra="forbid")
    services: list[ServiceSpec] = Field(default_factory=list)
    address: RepositoryAddress | None = Field(
        None, description="the repository's own address (RepositoryAddress)"
    )
    user_namespace: bool = Field(
        default=False,
        description="run the containers in a user namespace (dockerd --userns-remap): "
        "their root is an unprivileged user of the host, and root holds every capability "
        "over them, which CRIU needs for tasks that are not root (PostgreSQL) where the "
        "host's root lacks CAP_SYS_RESOURCE. Every host it moves to maps the same ids",
    )

    @field_validator("services")
    @classmethod
    def _unique(cls, value: list[ServiceSpec]) -> list[ServiceSpec]:
        names = [s.name for s in value]
        if len(names) != len(set(names)):
            raise ValueError("service names must be unique")
        return value

    @property
    def address_service(self) -> str | None:
        """The service holding the repository's address (None without one)."""
        if self.address is None:
            return None
        if self.address.service is not None:
            return self.address.service
        return self.services[0].name if len(self.services) == 1 else None

    def with_address(self, address: RepositoryAddress) -> RepositoryServices:
        """These services, the address given to one of them; ValueError if it cannot be."""
        names = [s.name for s in self.services]
        if address.service is not None and address.service not in names:
            raise ValueError(f"address {address.cidr}: no service {address.service!r} here")
        if address.service is None and len(names) != 1:
            raise ValueError(
                f"address {address.cidr}: say which service holds it (address.service); "
                f"services: {', '.join(names) or 'none'}"
            )
        return self.model_copy(update={"address": address})
