"""The operator's configuration (environment variables, as a Deployment sets them)."""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import BaseModel, Field

from berth_common.pki import CertFiles
from berth_operator.migration.retry import BACKOFF


class OperatorConfig(BaseModel):
    namespaces: list[str] = Field(default_factory=list, description="empty: all namespaces")
    tls_dir: Path = Path("/etc/berth/operator-tls")  # ca.crt, tls.crt, tls.key
    cluster_max_migrations: int = 4
    heartbeat_seconds: float = Field(10, gt=0, description="how often each agent is asked")
    # A status write costs the operator 1.6 ms of CPU, a beat answered 304 0.7 ms: at 100
    # Machines, renewing every 20 s was half of the operator's CPU at rest.
    heartbeat_renew_seconds: float = Field(
        60,
        gt=0,
        description="a Machine's status is written when what its agent reports changes, "
        "and at least this often (lastHeartbeat)",
    )
    poll_seconds: float = Field(
        5, gt=0, description="how soon a waiting placement (limits, machine not Ready) looks again"
    )
    workers: int = Field(
        16,
        ge=1,
        description="placements decided at once besides the migrations' steps (each holds "
        "a worker of its own, up to cluster_max_migrations)",
    )
    resync_seconds: float = Field(
        3600, gt=0, description="every placement is reconciled at least this often"
    )
    retry_backoff: tuple[float, ...] = Field(
        BACKOFF,
        min_length=1,
        description="seconds before each retry of a failed migration; one entry per attempt",
    )
    peering: str = "berth"
    metrics_port: int = 9090
    max_workers: int = Field(
        16, ge=4, description="kopf's thread pool, for its synchronous handlers (deletions)"
    )
    health_port: int = Field(8080, description="kopf liveness probe: GET /healthz; 0: off")
    peering_priority: int | None = Field(
        None, description="kopf peering priority; unset: random, so one replica wins"
    )
    sessions_ca_dir: Path | None = Field(
        None,
        description="the sessions CA (tls.crt, tls.key) that signs people's kubectl berth "
        "logs/exec certificates; unset: session requests are denied",
    )
    dns_check_server: str | None = Field(
        None,
        description="ADDRESS[:PORT] of the DNS server external-dns writes spec.dns's records "
        "to: a placement is Ready once its names answer there; unset: once the records are "
        "written",
    )
    dns_check_grace_seconds: float = Field(
        120,
        gt=0,
        description="how long external-dns may take (its default interval is 60 s) before "
        "DNSNotUpdated is announced",
    )
    crash_file: Path | None = Field(
        None, description="test only: a file naming a crash point (berth_common.crash)"
    )

    @property
    def ca(self) -> Path:
        return self.tls_dir / "ca.crt"

    @property
    def identity(self) -> CertFiles:
        """The operator's certificate: it authenticates to agents and signs tokens."""
        return CertFiles(self.tls_dir / "tls.crt", self.tls_dir / "tls.key")

    @classmethod
    def from_env(cls) -> OperatorConfig:
        env = os.environ
        values: dict[str, object] = {}
        if env.get("BERTH_NAMESPACES"):
            values["namespaces"] = [n for n in env["BERTH_NAMESPACES"].split(",") if n]
        for key, field in (
            ("BERTH_TLS_DIR", "tls_dir"),
            ("BERTH_CLUSTER_MAX_MIGRATIONS", "cluster_max_migrations"),
            ("BERTH_HEARTBEAT_SECONDS", "heartbeat_seconds"),
            ("BERTH_HEARTBEAT_RENEW_SECONDS", "heartbeat_renew_seconds"),
            ("BERTH_POLL_SECONDS", "poll_seconds"),
            ("BERTH_WORKERS", "workers"),
            ("BERTH_RESYNC_SECONDS", "resync_seconds"),
            ("BERTH_PEERING", "peering"),
            ("BERTH_METRICS_PORT", "metrics_port"),
            ("BERTH_MAX_WORKERS", "max_workers"),
            ("BERTH_HEALTH_PORT", "health_port"),
            ("BERTH_PEERING_PRIORITY", "peering_priority"),
            ("BERTH_SESSIONS_CA_DIR", "sessions_ca_dir"),
            ("BERTH_DNS_CHECK_SERVER", "dns_check_server"),
            ("BERTH_DNS_CHECK_GRACE_SECONDS", "dns_check_grace_seconds"),
            ("BERTH_CRASH_FILE", "crash_file"),
        ):
            if env.get(key):
                values[field] = env[key]
        if env.get("BERTH_RETRY_BACKOFF"):  # e.g. 1,2,4 (tests)
            values["retry_backoff"] = tuple(env["BERTH_RETRY_BACKOFF"].split(","))
        return cls.model_validate(values)

    @property
    def stale_heartbeat_seconds(self) -> float:
        """A Machine whose written heartbeat is this old is not Ready: its renewal was
        missed twice (the operator or its heartbeats stopped), not merely late."""
        return 2 * self.heartbeat_renew_seconds + self.heartbeat_seconds

    @property
    def worker_count(self) -> int:
        """A migration's step holds a worker for its length, and as many migrations as
        the cluster's limit may be stepping at once: `workers` more remain for every
        other decision (with only 4 more, a move patched while 44 others stepped waited
        1.8 s for a worker at 5,000 placements)."""
        return self.workers + self.cluster_max_migrations
