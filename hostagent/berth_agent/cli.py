"""`berth-agent`: the host agent's daemon (`serve`) and admin commands (`repo ...`)."""

from __future__ import annotations

import argparse
import json
import sys
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from berth_agent.config import AgentConfig, load_config
from berth_agent.errors import InvalidRequest, Refusal
from berth_agent.repositories import TEMPLATES, Repositories
from berth_agent.server.transfers import peer_client
from berth_agent.transfer.sender import Sender
from berth_common import tokens, units
from berth_common.agent_api.models import PushProgress, RepositoryStatus, wire
from berth_common.agent_api.services import RepositoryServices
from berth_common.logs import setup_logging
from berth_common.pki import CertFiles


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="berth-agent", description=__doc__)
    parser.add_argument("--config", type=Path, help="YAML config file (flags override it)")
    parser.add_argument("--data-dir", type=Path, help="datastore directory (/var/lib/berth)")
    parser.add_argument("--run-dir", type=Path, help="runtime directory (/run/berth)")
    parser.add_argument("--log-format", choices=["json", "text"], default=None)
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the agent's mTLS HTTPS API")
    serve.add_argument("--name", help="machine name")
    serve.add_argument("--listen")
    serve.add_argument("--port", type=int)
    serve.add_argument("--tls-cert", type=Path)
    serve.add_argument("--tls-key", type=Path)
    serve.add_argument("--client-ca", type=Path)
    serve.add_argument("--session-ca", type=Path, help="enables kubectl berth logs/exec sessions")

    repo = sub.add_parser("repo", help="manage repositories on this host").add_subparsers(
        dest="repo_command", required=True
    )
    create = repo.add_parser("create", help="create a repository image")
    create.add_argument("name")
    create.add_argument("--size", required=True, help="e.g. 2G")
    create.add_argument("--template", choices=sorted(TEMPLATES))
    create.add_argument("--services", type=Path, help="JSON file with the services")
    create.add_argument("--key-file", type=Path, help="LUKS key (needs dm-crypt)")
    up = repo.add_parser("up", help="mount, start its dockerd and its services")
    up.add_argument("name")
    up.add_argument("--key-file", type=Path)
    up.add_argument(
        "--force",
        action="store_true",
        help="start a copy marked as moved to another machine (stale, or received and not "
        "yet started by its migration): make sure it runs nowhere else",
    )
    repo.add_parser("down", help="stop its dockerd and unmount").add_argument("name")
    freeze = repo.add_parser("freeze", help="checkpoint labelled containers, stop the rest")
    freeze.add_argument("name")
    freeze.add_argument("--migration-id", required=True)
    push = repo.add_parser("push", help="send the image to another host's agent")
    push.add_argument("name")
    push.add_argument(
        "--to",
        required=True,
        metavar="HOST[:PORT]|URL",
        help="the receiving agent, e.g. 10.0.0.12 or https://host-b:7443",
    )
    push.add_argument(
        "--transfer-id",
        "--migration-id",  # its old name, kept for scripts
        dest="transfer_id",
        help="resume this transfer (default: a new one)",
    )
    push.add_argument("--compress", action="store_true", help="zstd-compress blocks")
    push.add_argument("--bandwidth", help="limit, bytes per second: e.g. 50M, 1G")
    push.add_argument("-o", "--output", choices=["text", "json"], default="text")
    for verb in ("list", "status"):
        p = repo.add_parser(verb, help=f"{verb} repositories")
        if verb == "status":
            p.add_argument("name")
        p.add_argument("-o", "--output", choices=["text", "json"], default="text")
    delete = repo.add_parser("delete", help="delete a repository image for good")
    delete.add_argument("name")
    delete.add_argument("--confirm", required=True, help="the repository's name, again")

    install = sub.add_parser("install", help="install this host's agent from an enrollment bundle")
    install.add_argument("--bundle", type=Path, required=True, help="from kubectl berth enroll")
    uninstall = sub.add_parser("uninstall", help="stop and remove this host's agent")
    uninstall.add_argument("--purge", action="store_true", help="also empty the datastore")
    uninstall.add_argument("--force", action="store_true", help="even with repositories running")
    for p in (install, uninstall):
        p.add_argument("--etc-dir", type=Path, default=Path("/etc/berth"))
        p.add_argument("--systemd-dir", type=Path, default=Path("/etc/systemd/system"))
    install.add_argument(
        "--agent-command",
        type=Path,
        default=Path(sys.executable).parent / "berth-agent",
        help="what the unit runs (default: the berth-agent beside this one's Python)",
    )
    install.add_argument("--no-start", action="store_true", help="write files only")
    install.add_argument(
        "--force", action="store_true", help="even if this host is another machine"
    )
    return parser


def _config(args: argparse.Namespace) -> AgentConfig:
    config = load_config(args.config)
    updates: dict[str, Any] = {}
    for flag in ("data_dir", "run_dir"):
        if getattr(args, flag, None) is not None:
            updates[flag] = getattr(args, flag)
    if args.command == "serve":
        for flag in ("name", "listen", "port"):
            if getattr(args, flag) is not None:
                updates[flag] = getattr(args, flag)
        tls = config.tls.model_copy(
            update={
                k: v
                for k, v in (
                    ("cert", args.tls_cert),
                    ("key", args.tls_key),
                    ("client_ca", args.client_ca),
                    ("session_ca", args.session_ca),
                )
                if v is not None
            }
        )
        updates["tls"] = tls
    return config.model_copy(update=updates)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    config = _config(args)
    json_logs = args.log_format == "json" or (args.log_format is None and args.command == "serve")
    setup_logging(config.log_level, json_format=json_logs)
    if args.command == "serve":
        from berth_agent.server.serve import serve

        serve(config)
        return 0
    if args.command in ("install", "uninstall"):
        from berth_agent.install.cli import run

        return run(args)
    try:
        return _repo_command(Repositories(config), args)
    except Refusal as err:
        print(f"berth-agent: {err.message}", file=sys.stderr)
        return 1


def _read_key(path: Path | None) -> bytes | None:
    return path.read_bytes() if path else None


def _repo_command(repos: Repositories, args: argparse.Namespace) -> int:
    cmd = args.repo_command
    if cmd == "create":
        services = (
            RepositoryServices.model_validate_json(args.services.read_text())
            if args.services
            else None
        )
        record = repos.create(
            args.name,
            args.size,
            template=args.template,
            services=services,
            key=_read_key(args.key_file),
        )
        print(f"repository {record.name} created ({record.guid}, {args.size})")
    elif cmd == "up":
        durations = repos.up(args.name, key=_read_key(args.key_file), force=args.force)
        print(f"repository {args.name} up ({_fmt(durations)})")
    elif cmd == "down":
        print(f"repository {args.name} down ({_fmt(repos.down(args.name))})")
    elif cmd == "freeze":
        frozen = repos.freeze(args.name, args.migration_id)
        print(
            f"repository {args.name} frozen: checkpointed {frozen.checkpointed or '-'}, "
            f"stopped {frozen.stopped or '-'} ({_fmt(frozen.durations)})"
        )
    elif cmd == "push":
        return _push(repos, args)
    elif cmd == "delete":
        repos.delete(args.name, args.confirm)
        print(f"repository {args.name} deleted")
    elif cmd == "status":
        status = repos.status(args.name)
        print(json.dumps(wire(status), indent=2) if args.output == "json" else _status_text(status))
    elif cmd == "list":
        items = repos.list()
        if args.output == "json":
            print(json.dumps([wire(s) for s in items], indent=2))
        else:
            print(f"{'NAME':20} {'GUID':36} {'SIZE':>8} {'USED':>8} {'MOUNTED':7} DOCKER")
            for s in items:
                print(
                    f"{s.name:20} {s.guid:36} {_gib(s.image_bytes):>8} "
                    f"{_gib(s.allocated_bytes):>8} {'yes' if s.mounted else 'no':7} "
                    f"{'running' if s.docker.running else '-'}"
                )
    return 0


def _push(repos: Repositories, args: argparse.Namespace) -> int:
    config = repos.config
    endpoint = (
        args.to
        if args.to.startswith("https://")
        else (f"https://{args.to}" + ("" if ":" in args.to else f":{config.port}"))
    )
    bandwidth = parse_rate(args.bandwidth) if args.bandwidth else None
    record = repos.store.find(args.name)
    transfer_id = args.transfer_id or f"push-{int(time.time())}-{uuid.uuid4().hex[:6]}"
    with peer_client(config, endpoint) as target:
        target_name = target.healthz().machine
        token = tokens.issue(
            transfer_id,
            record.guid,
            config.name,
            target_name,
            CertFiles(config.tls.cert, config.tls.key),
        )
        result = Sender(config.data_dir, repos.store).push(
            args.name,
            target,
            token,
            transfer_id,
            compress=args.compress,
            bandwidth=bandwidth,
            on_progress=_print_progress,
        )
    print(file=sys.stderr)
    if args.output == "json":
        print(json.dumps(result.model_dump(mode="json", exclude={"event", "summary"}), indent=2))
    else:
        print(result.summary)
    return 0


def _print_progress(p: PushProgress) -> None:
    total = max(p.bytes_total, 1)
    print(
        f"\r  {p.mode:5} {p.bytes_done / 2**20:8.1f} / {total / 2**20:.1f} MiB "
        f"({100 * p.bytes_done / total:5.1f}%)  {p.rate / 1e6:7.1f} MB/s",
        end="",
        file=sys.stderr,
        flush=True,
    )


def parse_rate(text: str) -> float:
    try:
        return units.parse_rate(text)
    except ValueError as err:
        raise InvalidRequest(str(err)) from None


def _fmt(durations: dict[str, float]) -> str:
    return ", ".join(f"{k} {v:.2f}s" for k, v in durations.items()) or "nothing to do"


def _gib(n: int) -> str:
    return f"{n / 2**30:.2f}G" if n >= 2**30 else f"{n / 2**20:.0f}M"


def _status_text(s: RepositoryStatus) -> str:
    lines = [
        f"{s.name} ({s.guid})",
        f"  size {_gib(s.image_bytes)}, allocated {_gib(s.allocated_bytes)}",
        f"  mounted: {s.mount_path or 'no'}",
        "  dockerd: " + (f"running pid {s.docker.pid}" if s.docker.running else "stopped"),
    ]
    for c in s.containers:
        lines.append(
            f"  container {c.name}: {c.state}" + (" (checkpointable)" if c.checkpoint else "")
        )
    if s.frozen_by:
        lines.append(f"  frozen by migration {s.frozen_by}")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
