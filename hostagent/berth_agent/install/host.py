"""Carrying out an installation plan on this host, and removing the agent again."""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
from pathlib import Path

import yaml

from berth_agent.config import AgentConfig
from berth_agent.install.plan import UNIT_NAME, InstallPlan
from berth_agent.repositories import Repositories

log = logging.getLogger("berth.agent.install")


def systemd_running() -> bool:
    """systemd's own test (sd_booted): is it PID 1 here?"""
    return Path("/run/systemd/system").is_dir()


def systemctl(*args: str) -> None:
    subprocess.run(["systemctl", *args], check=True)


def write_files(plan: InstallPlan) -> None:
    """Each file atomically (write aside, then rename), so a crash never leaves half a
    key or half a config behind."""
    for spec in plan.files:
        spec.path.parent.mkdir(parents=True, exist_ok=True)
        aside = spec.path.with_name(f".{spec.path.name}.new")
        fd = os.open(aside, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, spec.mode)
        with os.fdopen(fd, "wb") as out:
            out.write(spec.content)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(aside, spec.mode)
        os.replace(aside, spec.path)


def read_config(path: Path) -> AgentConfig | None:
    if not path.exists():
        return None
    return AgentConfig.model_validate(yaml.safe_load(path.read_text()) or {})


def start(plan: InstallPlan) -> str:
    """Enable and (re)start the unit; without systemd, say how to start the agent."""
    if not systemd_running():
        return "systemd is not running on this host: start the agent with\n  " + exec_start(
            plan.unit
        )
    systemctl("daemon-reload")
    # An upgrade restarts only the agent: KillMode=process leaves the repositories'
    # dockerds running, and the new agent adopts them.
    systemctl("enable", UNIT_NAME)
    systemctl("restart", UNIT_NAME)
    return f"{UNIT_NAME} enabled and {'restarted' if plan.upgrade else 'started'}"


def exec_start(unit: Path) -> str:
    for line in unit.read_text().splitlines():
        if line.startswith("ExecStart="):
            return line.removeprefix("ExecStart=")
    raise ValueError(f"{unit} has no ExecStart")


def running_repositories(config: AgentConfig) -> list[str]:
    return [r.name for r in Repositories(config).list() if r.mounted]


def all_repositories(config: AgentConfig) -> list[str]:
    return [r.name for r in Repositories(config).list()]


def uninstall(etc_dir: Path, systemd_dir: Path, *, purge: bool, force: bool) -> list[str]:
    """Stop and remove the agent. Refuses while repositories run here (move them away
    first) unless force; their data stays unless purge, which refuses while any exist."""
    config = read_config(etc_dir / "agent.yaml") or AgentConfig()
    running = running_repositories(config)
    if running and not force:
        raise UninstallRefused(
            f"repositories still run on this host: {', '.join(running)}; move them away "
            "(kubectl berth drain MACHINE) or pass --force to leave them running unmanaged"
        )
    if purge and all_repositories(config):
        raise UninstallRefused(
            f"--purge would delete repositories {', '.join(all_repositories(config))}; "
            "delete or move them first"
        )
    done: list[str] = []
    unit = systemd_dir / UNIT_NAME
    if systemd_running() and unit.exists():
        systemctl("disable", "--now", UNIT_NAME)
        done.append(f"stopped and disabled {UNIT_NAME}")
    for path in (unit, etc_dir / "agent.yaml"):
        if path.exists():
            path.unlink()
            done.append(f"removed {path}")
    if (etc_dir / "tls").exists():
        shutil.rmtree(etc_dir / "tls")
        done.append(f"removed {etc_dir / 'tls'}")
    if systemd_running():
        systemctl("daemon-reload")
    if purge and config.data_dir.exists():
        # Its contents: the directory itself may be a mount point (a datastore).
        for child in config.data_dir.iterdir():
            shutil.rmtree(child) if child.is_dir() and not child.is_symlink() else child.unlink()
        done.append(f"emptied {config.data_dir}")
    return done


class UninstallRefused(RuntimeError):
    """Uninstalling would strand or destroy repositories; nothing was changed."""
