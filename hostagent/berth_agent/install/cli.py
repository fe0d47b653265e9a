"""`berth-agent install` and `berth-agent uninstall`."""

from __future__ import annotations

import argparse
import sys

from berth_agent.install import host
from berth_agent.install.plan import InstallRefused, plan_install
from berth_common.bundle import BundleError, HostBundle


def run(args: argparse.Namespace) -> int:
    try:
        return _install(args) if args.command == "install" else _uninstall(args)
    except (BundleError, InstallRefused, host.UninstallRefused) as err:
        print(f"berth-agent {args.command}: {err}", file=sys.stderr)
        return 1


def _install(args: argparse.Namespace) -> int:
    bundle = HostBundle.read(args.bundle)
    if not args.agent_command.exists():
        raise InstallRefused(f"{args.agent_command} does not exist (--agent-command)")
    current = host.read_config(args.etc_dir / "agent.yaml")
    plan = plan_install(
        bundle, args.etc_dir, args.systemd_dir, args.agent_command, current, args.force
    )
    host.write_files(plan)
    for spec in plan.files:
        print(f"wrote {spec.path} ({spec.mode:o})")
    what = "upgraded" if plan.upgrade else "installed"
    print(f"machine {bundle.name}: agent {what}, listening on {plan.config.listen}:{bundle.port}")
    if not args.no_start:
        print(host.start(plan))
    return 0


def _uninstall(args: argparse.Namespace) -> int:
    for line in host.uninstall(args.etc_dir, args.systemd_dir, purge=args.purge, force=args.force):
        print(line)
    print("berth-agent uninstalled; delete its Machine: kubectl delete machine.berth.dev NAME")
    return 0
