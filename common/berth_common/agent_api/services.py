"""What a repository runs: its services, stored inside the repository so they move with
it, and sent to the agent by whoever creates the repository (CreateRequest.services)."""

from __future__ import annotations

import re

from pydantic import BaseModel, ConfigDict, Field, field_validator

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


class RepositoryServices(BaseModel):
    model_config = ConfigDict(extra="forbid")
    services: list[ServiceSpec] = Field(default_factory=list)
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
