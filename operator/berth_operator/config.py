"""The operator's configuration (environment variables, as a Deployment sets them)."""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import BaseModel, Field

from berth_common.pki import CertFiles


class OperatorConfig(BaseModel):
    namespaces: list[str] = Field(default_factory=list, description="empty: all namespaces")
    tls_dir: Path = Path("/etc/berth/operator-tls")  # ca.crt, tls.crt, tls.key
    cluster_max_migrations: int = 4
    heartbeat_seconds: float = 10
    stale_heartbeat_seconds: float = 45
    poll_seconds: float = 5
    inventory_cache_seconds: float = Field(
        5,
        ge=0,
        description="how long all placements share one look at the Machines, the migrations "
        "in flight and each machine's repositories; 0: each reconcile looks for itself",
    )
    peering: str = "berth"
    metrics_port: int = 9090
    max_workers: int = Field(
        1024, ge=8, description="kopf's thread pool: one per placement, plus machines and room"
    )
    health_port: int = Field(8080, description="kopf liveness probe: GET /healthz; 0: off")
    peering_priority: int | None = Field(
        None, description="kopf peering priority; unset: random, so one replica wins"
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
            ("BERTH_POLL_SECONDS", "poll_seconds"),
            ("BERTH_INVENTORY_CACHE_SECONDS", "inventory_cache_seconds"),
            ("BERTH_PEERING", "peering"),
            ("BERTH_METRICS_PORT", "metrics_port"),
            ("BERTH_MAX_WORKERS", "max_workers"),
            ("BERTH_HEALTH_PORT", "health_port"),
            ("BERTH_PEERING_PRIORITY", "peering_priority"),
            ("BERTH_CRASH_FILE", "crash_file"),
        ):
            if env.get(key):
                values[field] = env[key]
        return cls.model_validate(values)
