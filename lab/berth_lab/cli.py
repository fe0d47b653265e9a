"""`berth-lab`: bring the multi-host lab up and down, look inside, run the demo."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from berth_common.logs import setup_logging
from berth_lab.host import LabError
from berth_lab.lab import Lab
from berth_lab.plan import PlanError, plan_lab


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="berth-lab", description=__doc__)
    parser.add_argument("--name", default="lab", help="lab name (default: lab)")
    parser.add_argument("--log-format", choices=["text", "json"], default="text")
    sub = parser.add_subparsers(dest="command", required=True)

    up = sub.add_parser("up", help="create the hosts, their network and datastores")
    up.add_argument("--hosts", type=int, default=2)
    up.add_argument("--bandwidth", help="shape every host link, e.g. 1gbit")
    up.add_argument("--datastore-size", default="20G", help="sparse size of each datastore")

    status = sub.add_parser("status", help="show hosts, addresses and datastores")
    status.add_argument("-o", "--output", choices=["text", "json"], default="text")

    exec_ = sub.add_parser("exec", help="run a command inside a host: exec HOST -- CMD...")
    exec_.add_argument("host")
    exec_.add_argument("argv", nargs=argparse.REMAINDER)

    sub.add_parser("down", help="remove everything the lab made, also after a crash")

    demo = sub.add_parser("demo", help="the main job: move a running app with its memory")
    demo.add_argument("--keep", action="store_true", help="leave the lab up to explore")
    demo.add_argument("--json", type=Path, help="write a machine-readable summary here")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    # The demo narrates on stdout; its logs would only interleave with the story.
    level = "warning" if args.command == "demo" else "info"
    setup_logging(level, json_format=args.log_format == "json")
    if os.geteuid() != 0:
        print("berth-lab: must run as root (namespaces, mounts, loop devices)", file=sys.stderr)
        return 2
    try:
        return _dispatch(args)
    except (LabError, PlanError) as err:
        print(f"berth-lab: {err}", file=sys.stderr)
        return 1


def _dispatch(args: argparse.Namespace) -> int:
    if args.command == "up":
        plan = plan_lab(
            args.name,
            hosts=args.hosts,
            bandwidth=args.bandwidth,
            datastore_size=args.datastore_size,
        )
        lab = Lab(plan).up()
        _print_status(lab.status())
        return 0
    if args.command == "demo":
        from berth_lab.demo import run_demo

        return run_demo(keep=args.keep, json_path=args.json)
    if args.command == "down":
        try:
            lab = Lab.load(args.name)
        except LabError:
            lab = Lab(plan_lab(args.name, hosts=26))  # nothing recorded: clean by names
        lab.down()
        print(f"lab {args.name} is down")
        return 0
    lab = Lab.load(args.name)
    if args.command == "status":
        if args.output == "json":
            print(json.dumps(lab.status(), indent=2))
        else:
            _print_status(lab.status())
        return 0
    if args.command == "exec":
        argv = args.argv[1:] if args.argv[:1] == ["--"] else args.argv
        if not argv:
            raise LabError("exec needs a command: berth-lab exec HOST -- CMD...")
        host = lab.host(args.host)
        os.execvp("nsenter", [*host.nsenter(), *argv])
    raise AssertionError(args.command)


def _print_status(status: dict[str, object]) -> None:
    print(
        f"lab {status['name']}  network {status['network']}  "
        f"bandwidth {status['bandwidth'] or 'unlimited'}"
    )
    hosts = status["hosts"]
    assert isinstance(hosts, list)
    print(f"{'HOST':8} {'ADDRESS':14} {'UP':4} {'DATASTORE':18} {'FREE':>10}")
    for host in hosts:
        store = host["datastore"]
        free = store.get("freeBytes")
        free_text = f"{free / 2**30:.1f}GiB" if isinstance(free, int) else "-"
        print(
            f"{host['name']:8} {host['address']:14} {'yes' if host['up'] else 'NO':4} "
            f"{store['path']:18} {free_text:>10}"
        )


if __name__ == "__main__":
    sys.exit(main())
