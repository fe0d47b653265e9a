"""Which files an installation writes, from a bundle and the host's current config."""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import yaml

from berth_agent.config import AgentConfig, TLSConfig
from berth_common.bundle import HostBundle

UNIT_NAME = "berth-agent.service"
# What the shipped unit names; an installation points them at the real places.
UNIT_AGENT = "/opt/berth/venv/bin/berth-agent"
UNIT_CONFIG = "/etc/berth/agent.yaml"


class InstallRefused(ValueError):
    """Installing would break something; nothing was written."""


@dataclass(frozen=True)
class FileSpec:
    path: Path
    content: bytes
    mode: int


@dataclass(frozen=True)
class InstallPlan:
    files: list[FileSpec]
    config: AgentConfig
    unit: Path
    upgrade: bool  # this host already ran an agent of the same name

    @property
    def config_path(self) -> Path:
        return self.files[0].path


def unit_text(agent_command: Path, config_path: Path) -> str:
    shipped = resources.files("berth_agent.install").joinpath(UNIT_NAME).read_text()
    return shipped.replace(UNIT_AGENT, str(agent_command)).replace(UNIT_CONFIG, str(config_path))


def plan_install(
    bundle: HostBundle,
    etc_dir: Path,
    systemd_dir: Path,
    agent_command: Path,
    current: AgentConfig | None,
    force: bool = False,
) -> InstallPlan:
    """The files for this bundle. An existing config of the same machine is an upgrade
    or a certificate renewal: its other settings (data_dir, listen, ...) are kept. One of
    another machine is refused without force: its repositories would change owner."""
    if current is not None and current.name and current.name != bundle.name and not force:
        raise InstallRefused(
            f"this host is already machine {current.name!r}; the bundle is for "
            f"{bundle.name!r} (uninstall first, or --force)"
        )
    tls_dir = etc_dir / "tls"
    base = current if current is not None else AgentConfig()
    tls = TLSConfig(
        cert=tls_dir / "agent.crt",
        key=tls_dir / "agent.key",
        client_ca=tls_dir / "ca.crt",
        # The bundle's sessions CA, else the one the host has (an older bundle lacks it).
        session_ca=tls_dir / "sessions-ca.crt" if bundle.sessions_ca_pem else base.tls.session_ca,
    )
    config = base.model_copy(update={"name": bundle.name, "port": bundle.port, "tls": tls})
    config_path = etc_dir / "agent.yaml"
    unit = systemd_dir / UNIT_NAME
    document = "# Written by berth-agent install; kept across upgrades.\n" + yaml.safe_dump(
        config.model_dump(mode="json"), sort_keys=False
    )
    files = [
        FileSpec(config_path, document.encode(), 0o644),
        FileSpec(tls.client_ca, bundle.ca_pem, 0o644),
        FileSpec(tls.cert, bundle.cert_pem, 0o644),
        FileSpec(tls.key, bundle.key_pem, 0o600),
        FileSpec(unit, unit_text(agent_command, config_path).encode(), 0o644),
    ]
    if bundle.sessions_ca_pem and tls.session_ca is not None:
        files.append(FileSpec(tls.session_ca, bundle.sessions_ca_pem, 0o644))
    upgrade = current is not None and current.name == bundle.name
    return InstallPlan(files=files, config=config, unit=unit, upgrade=upgrade)
