"""RepositoryPlacement: which machine a repository should run on, and what happened."""

from __future__ import annotations

import enum
from typing import Annotated, ClassVar

from pydantic import Field

from berth_api.v1alpha1.common import DNS_LABEL, DNS_SUBDOMAIN, Condition, Model, ObjectMeta

HISTORY_LIMIT = 10


class Strategy(enum.StrEnum):
    LIVE = "live"
    COLD = "cold"


class MemoryMode(enum.StrEnum):
    FREEZE = "freeze"
    POSTCOPY = "postcopy"
    AUTO = "auto"


class DeletionPolicy(enum.StrEnum):
    RETAIN = "Retain"
    DELETE = "Delete"


class TransferOptions(Model):
    bandwidth_limit: str | None = Field(
        None,
        pattern=r"^[0-9]+(\.[0-9]+)?[KMG]?$",
        description="bytes per second between agents, e.g. 100M; unset: unlimited",
    )
    compression: bool = Field(False, description="zstd-compress image blocks on the wire")


class SecretRef(Model):
    name: str = Field(pattern=DNS_SUBDOMAIN, max_length=253)


STOP_SIGNAL = r"^(SIG)?[A-Z][A-Z0-9+-]*$|^[1-9][0-9]?$"


class PortTemplate(Model):
    container: int = Field(ge=1, le=65535)
    host: int = Field(ge=1, le=65535)
    protocol: str = Field("tcp", pattern="^(tcp|udp)$")


class ServiceTemplate(Model):
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,62}$")
    image: str = Field(min_length=1)
    command: list[str] | None = None
    environment: dict[str, str] = Field(default_factory=dict)
    checkpoint: bool = Field(False, description="CRIU-checkpoint this service on a move")
    ports: list[PortTemplate] = Field(default_factory=list)
    stop_signal: str | None = Field(
        None,
        pattern=STOP_SIGNAL,
        description="the signal that stops it (a move stops the services it does not "
        "checkpoint), e.g. SIGINT; default: the image's STOPSIGNAL, else SIGTERM",
    )


Hostname = Annotated[str, Field(pattern=DNS_SUBDOMAIN, max_length=253)]


class DNSOptions(Model):
    """Names that should resolve to the machine the repository runs on. berth writes them
    into an external-dns DNSEndpoint it owns, switched as the last step of each move."""

    hostnames: list[Hostname] = Field(min_length=1, max_length=16)
    ttl: int = Field(60, ge=1, le=86400, description="seconds; short, so clients follow a move")
    skip: bool = Field(
        False, description="leave the records as they are (kubectl berth migrate --skip-dns)"
    )


IPV4 = r"^[0-9]{1,3}(\.[0-9]{1,3}){3}$"


class AddressOptions(Model):
    """An IPv4 address of the repository's own on the segment its machines share: its
    service answers there, without NAT, on whichever machine it runs, and connections
    open during a move survive it (the address moves inside the freeze)."""

    cidr: str = Field(
        pattern=r"^[0-9]{1,3}(\.[0-9]{1,3}){3}/[0-9]{1,2}$",
        description="the address and the segment's prefix, e.g. 10.1.0.200/24",
    )
    service: str | None = Field(
        None,
        pattern=r"^[a-z0-9][a-z0-9_-]{0,62}$",
        description="the service that holds it; default: the repository's only service",
    )
    gateway: str | None = Field(
        None, pattern=IPV4, description="the segment's router; default: its first address"
    )


class ServiceEndpoint(Model):
    """Where one published port of a service answers: the machine's address and the port."""

    service: str
    machine: str
    address: str
    port: int = Field(ge=1, le=65535)
    protocol: str = "tcp"


class RepositoryTemplate(Model):
    """How to create the repository when it exists on no machine yet."""

    size: str = Field("2G", pattern=r"^[1-9][0-9]*[MGT]$")
    app: str | None = Field(None, description="a built-in application: pulse, postgres or redis")
    services: list[ServiceTemplate] = Field(default_factory=list)


class RepositoryPlacementSpec(Model):
    repository: str = Field(
        pattern=DNS_LABEL, max_length=63, description="the repository's name; immutable"
    )
    machine: str = Field(
        pattern=DNS_SUBDOMAIN,
        max_length=253,
        description="the Machine it should run on; change it to move it",
    )
    checkpoint: bool = Field(True, description="keep processes' memory (CRIU); false: restart")
    strategy: Strategy = Strategy.LIVE
    memory: MemoryMode = Field(
        MemoryMode.FREEZE,
        description="when a checkpointed container's memory moves. freeze: all of it "
        "while the application is frozen (the downtime grows with the memory). postcopy: "
        "only the process state inside the freeze; the target runs the application at "
        "once and its pages follow from the source, on demand and in the background "
        "(the downtime does not grow with the memory, but until the last page has moved "
        "the application needs both machines and the link between them: a failure then "
        "brings it back on the source as it was at the freeze, and what it did on the "
        "target meanwhile is lost). auto: postcopy for containers holding more than "
        "64 MiB of memory, freeze for the others",
    )
    stop_grace_period_seconds: int | None = Field(
        None,
        ge=0,
        le=300,
        description="seconds a container that is stopped for a move (not checkpointed: "
        "every container of a cold move) gets between its stop signal and SIGKILL; "
        "default: the container's own stop timeout, else docker's 10 s. A container whose "
        "main process ignores its stop signal holds the downtime for this long",
    )
    transfer: TransferOptions = Field(default_factory=TransferOptions)
    downtime_budget: str | None = Field(
        None,
        pattern=r"^[0-9]+(\.[0-9]+)?(ms|s|m)$",
        description="report a migration whose downtime exceeds this, e.g. 2s",
    )
    credentials_secret_ref: SecretRef | None = Field(
        None,
        description="the repository is encrypted (LUKS2); this Secret in the placement's "
        "namespace holds its key in the entry `key`",
    )
    deletion_policy: DeletionPolicy = DeletionPolicy.RETAIN
    template: RepositoryTemplate | None = None
    dns: DNSOptions | None = None
    address: AddressOptions | None = Field(
        None,
        description="an address of the repository's own (given when it is created; "
        "immutable): its service answers there on whichever machine it runs, and "
        "established connections survive a move. The machines must share its segment",
    )

    CEL: ClassVar[list[dict[str, str]]] = [
        {
            "rule": "self.repository == oldSelf.repository",
            "message": "spec.repository is immutable",
        },
        {
            "rule": "has(self.address) == has(oldSelf.address) && "
            "(!has(self.address) || self.address == oldSelf.address)",
            "message": "spec.address is immutable: it is given to the repository when it is "
            "created",
        },
    ]


class LastMigration(Model):
    id: str
    source: str = Field(alias="from")
    target: str = Field(alias="to")
    mode: str
    phase: str | None = None
    started_at: str | None = Field(None, description="when the operator began the migration")
    cutover_at: str | None = Field(
        None,
        description="when the operator asked the source to freeze: the start of the "
        "cutover and of the downtime",
    )
    finished_at: str | None = Field(None, description="when the migration ended")
    bulk_bytes: int = 0
    delta_bytes: int = 0
    checkpoint_seconds: float | None = None
    downtime_seconds: float | None = Field(
        None, description="from cutoverAt until the target answered on every port"
    )
    phase_seconds: dict[str, float] = Field(default_factory=dict)
    stopped_containers: list[str] = Field(
        default_factory=list, description="containers stopped at the freeze, started afresh"
    )
    killed_containers: list[str] = Field(
        default_factory=list,
        description="of the stopped: those still running at the end of their grace period "
        "(spec.stopGracePeriodSeconds), killed with SIGKILL",
    )
    post_copy_containers: list[str] = Field(
        default_factory=list, description="containers whose memory followed after the freeze"
    )
    post_copy_bytes: int = Field(
        0, description="post-copy: bytes the target received from the source's page servers"
    )
    post_copy_pages: int = Field(
        0, description="post-copy: pages (4 KiB) the target's page fetches placed"
    )
    post_copy_faulted_pages: int = Field(
        0,
        description="post-copy: of those, the pages a process touched before they had "
        "arrived; each one waited for a round trip to the source",
    )
    post_copy_seconds: float | None = Field(
        None,
        description="post-copy: from the target's answer until it held every page "
        "(the source was needed until then)",
    )
    step_seconds: dict[str, float] = Field(
        default_factory=dict,
        description="the downtime's steps: freeze.*, final.*, up.* as the agents timed "
        "them; operator.persist (the status write before the target starts it) and "
        "operator.other (the rest: the calls between operator and agents)",
    )
    result: str | None = None
    reason: str | None = None


class RetryState(Model):
    """Back-off after a failed or rolled-back migration of one generation."""

    generation: int
    attempts: int = Field(ge=1)
    reason: str | None = None
    not_before: float = Field(description="Unix time before which no new attempt starts")


class RepositoryPlacementStatus(Model):
    observed_generation: int = Field(-1, description="-1 until the operator has seen it")
    conditions: list[Condition] = Field(default_factory=list)
    current_machine: str | None = None
    phase: str | None = Field(None, description="informational; use conditions to decide")
    migration: dict[str, object] | None = Field(
        None, description="the running migration's persisted state (operator-internal)"
    )
    endpoints: list[ServiceEndpoint] = Field(
        default_factory=list,
        description="where the services answer, from the agent running it; updated at the "
        "end of every move, before Ready turns True",
    )
    dns_hostnames: list[str] = Field(
        default_factory=list,
        description="the names this placement's DNSEndpoint (written by berth) points at "
        "its machine; empty: berth wrote none, so there is none to remove when spec.dns goes",
    )
    last_migration: LastMigration | None = None
    retry: RetryState | None = None
    history: list[LastMigration] = Field(default_factory=list, max_length=HISTORY_LIMIT)


class RepositoryPlacement(Model):
    api_version: str = "berth.dev/v1alpha1"
    kind: str = "RepositoryPlacement"
    metadata: ObjectMeta = Field(default_factory=ObjectMeta)
    spec: RepositoryPlacementSpec
    status: RepositoryPlacementStatus = Field(default_factory=RepositoryPlacementStatus)
