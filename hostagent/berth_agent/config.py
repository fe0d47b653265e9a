"""The agent's configuration: a YAML file, overridden by flags."""

from __future__ import annotations

from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field


class TLSConfig(BaseModel):
    """This agent's certificate serves its API and identifies it to peers."""

    model_config = ConfigDict(extra="forbid")
    cert: Path = Path("/etc/berth/tls/agent.crt")
    key: Path = Path("/etc/berth/tls/agent.key")
    client_ca: Path = Field(
        Path("/etc/berth/tls/ca.crt"),
        description="CA that signs the operator's and peers' certificates",
    )
    session_ca: Path | None = Field(
        None,
        description="CA that signs people's short-lived session certificates (kubectl berth "
        "logs/exec); none: sessions are refused",
    )


class AgentConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field("", description="machine name reported to the operator")
    data_dir: Path = Path("/var/lib/berth")
    run_dir: Path = Path("/run/berth")
    listen: str = "0.0.0.0"
    port: int = Field(7443, ge=1, le=65535)
    tls: TLSConfig = Field(default_factory=TLSConfig)
    dockerd: str = "/usr/sbin/dockerd"
    log_level: str = "info"
    transfer_idle_expiry: float = Field(
        6 * 3600,
        gt=0,
        description="seconds; a transfer untouched this long (partial image on the target, "
        "snapshot on the source) is removed. Long enough for a migration retried after an "
        "outage to resume; a removed one begins again",
    )
    uplink: str | None = Field(
        None,
        pattern=r"^[A-Za-z0-9_.:-]{1,15}$",
        description="the network interface on the segment the machines share (eth0): a "
        "repository with an address of its own answers there. Every machine a repository "
        "moves between names it the same (an altname will do); unset: such repositories "
        "cannot run here",
    )
    fault_injection: bool = Field(False, description="test only: honour injected faults")


DEFAULT_PATH = Path("/etc/berth/agent.yaml")


def load_config(path: Path | None) -> AgentConfig:
    """The given file, else /etc/berth/agent.yaml where it exists, else the defaults."""
    if path is None:
        if not DEFAULT_PATH.exists():
            return AgentConfig()
        path = DEFAULT_PATH
    return AgentConfig.model_validate(yaml.safe_load(path.read_text()) or {})
