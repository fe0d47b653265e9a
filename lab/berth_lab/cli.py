"""`berth-lab`: bring the multi-host lab up and down, look inside, run the demo."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from berth_common.logs import setup_logging
from berth_lab.controlplane import LabControlPlane
from berth_lab.host import LabError
from berth_lab.kube import find_binaries
from berth_lab.kube_tools import KubeError
from berth_lab.lab import Lab
from berth_lab.plan import DEFAULT_LAB, DEMO_LAB, PlanError, plan_lab


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="berth-lab", description=__doc__)
    parser.add_argument(
        "--name", help=f"lab name (default: {DEFAULT_LAB}; for the demo: {DEMO_LAB})"
    )
    parser.add_argument("--log-format", choices=["text", "json"], default="text")
    sub = parser.add_subparsers(dest="command", required=True)

    up = sub.add_parser(
        "up",
        help="create the hosts, their network, datastores and agents "
        "(--cluster: also an API server, berth's operator, named and external-dns)",
    )
    up.add_argument("--hosts", type=int, default=2)
    up.add_argument("--bandwidth", help="shape every host link, e.g. 1gbit")
    up.add_argument("--datastore-size", default="20G", help="sparse size of each datastore")
    up.add_argument(
        "--cluster",
        action="store_true",
        help="also a kube-apiserver with berth's CRDs, a Machine per host, the operator "
        "(all namespaces), named and external-dns for spec.dns; prints the KUBECONFIG to use",
    )
    _output_flag(up)

    status = sub.add_parser("status", help="show hosts, addresses, datastores and the cluster")
    _output_flag(status)

    exec_ = sub.add_parser("exec", help="run a command inside a host: exec HOST -- CMD...")
    exec_.add_argument("host")
    exec_.add_argument("argv", nargs=argparse.REMAINDER)

    sub.add_parser("down", help="remove everything the lab made, also after a crash")

    operator = sub.add_parser("operator", help="the lab's operator (after up --cluster)")
    operator_sub = operator.add_subparsers(dest="operator_command", required=True)
    restart = operator_sub.add_parser("restart", help="stop it if it runs, start a new one")
    _output_flag(restart)

    demo = sub.add_parser("demo", help="the main job: move a running app with its memory")
    demo.add_argument(
        "--keep", action="store_true", help="leave the lab up to explore (as up --cluster)"
    )
    demo.add_argument("--json", type=Path, help="write a machine-readable summary here")
    return parser


def _output_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-o", "--output", choices=["text", "json"], default="text")


def lab_name(command: str, given: str | None) -> str:
    """The lab a command acts on: --name, else the demo's own lab or the default one."""
    if given:
        return given
    return DEMO_LAB if command == "demo" else DEFAULT_LAB


def exec_environ(environ: Mapping[str, str], bin_dir: Path) -> dict[str, str]:
    """The environment of a command run by `berth-lab exec`: berth's own commands
    (berth-agent, ...) are found in the bin dir of the Python running the lab, ahead of
    any other install, also when that dir is not on the caller's PATH."""
    path = [p for p in environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin").split(":") if p]
    return {**environ, "PATH": ":".join([str(bin_dir), *(p for p in path if p != str(bin_dir))])}


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    # The demo narrates on stdout; its logs would only interleave with the story.
    level = "warning" if args.command == "demo" else "info"
    setup_logging(level, json_format=args.log_format == "json")
    if os.geteuid() != 0:
        print("berth-lab: must run as root (namespaces, mounts, loop devices)", file=sys.stderr)
        return 2
    try:
        return _dispatch(args, lab_name(args.command, args.name))
    except (LabError, PlanError, KubeError) as err:
        print(f"berth-lab: {err}", file=sys.stderr)
        return 1


def _dispatch(args: argparse.Namespace, name: str) -> int:
    if args.command == "up":
        return _up(args, name)
    if args.command == "demo":
        from berth_lab.demo import run_demo

        return run_demo(name=name, keep=args.keep, json_path=args.json)
    if args.command == "down":
        try:
            lab = Lab.load(name)
        except LabError:
            lab = Lab(plan_lab(name, hosts=26))  # nothing recorded: clean by names
        lab.down()
        print(f"lab {name} is down")
        return 0
    lab = Lab.load(name)
    if args.command == "status":
        _print_status(lab, args.output)
        return 0
    if args.command == "operator":
        plane = LabControlPlane.load(lab)
        pid = plane.restart_operator()
        state = plane.state()
        if args.output == "json":
            print(json.dumps(state.to_json()["operator"], indent=2))
        else:
            print(f"operator restarted: pid {pid}, all namespaces, log {state.operator.log}")
        return 0
    if args.command == "exec":
        argv = args.argv[1:] if args.argv[:1] == ["--"] else args.argv
        if not argv:
            raise LabError("exec needs a command: berth-lab exec HOST -- CMD...")
        host = lab.host(args.host)
        env = exec_environ(os.environ, Path(sys.executable).parent)
        os.execvpe("nsenter", [*host.nsenter(), *argv], env)
    raise AssertionError(args.command)


def _up(args: argparse.Namespace, name: str) -> int:
    plan = plan_lab(
        name, hosts=args.hosts, bandwidth=args.bandwidth, datastore_size=args.datastore_size
    )
    if args.cluster:
        find_binaries()  # before anything is made: a missing binary says so and changes nothing
    lab = Lab(plan).up()
    if args.cluster:
        try:
            LabControlPlane(lab).up()
        except BaseException:
            print("berth-lab: the cluster did not come up; tearing the lab down", file=sys.stderr)
            lab.down()
            raise
    _print_status(lab, args.output)
    return 0


def _status(lab: Lab) -> dict[str, Any]:
    cluster = LabControlPlane(lab).state().to_json() if LabControlPlane.exists(lab) else None
    return {**lab.status(), "cluster": cluster}


def _print_status(lab: Lab, output: str) -> None:
    status = _status(lab)
    if output == "json":
        print(json.dumps(status, indent=2))
        return
    print(
        f"lab {status['name']}  network {status['network']}  "
        f"bandwidth {status['bandwidth'] or 'unlimited'}"
    )
    print(f"{'HOST':8} {'ADDRESS':14} {'UP':4} {'AGENT':6} {'DATASTORE':18} {'FREE':>10}")
    for host in status["hosts"]:
        store = host["datastore"]
        free = store.get("freeBytes")
        free_text = f"{free / 2**30:.1f}GiB" if isinstance(free, int) else "-"
        print(
            f"{host['name']:8} {host['address']:14} {'yes' if host['up'] else 'NO':4} "
            f"{'yes' if host['agent']['running'] else 'no':6} {store['path']:18} {free_text:>10}"
        )
    cluster = status["cluster"]
    flag = "" if lab.plan.name == DEFAULT_LAB else f"--name {lab.plan.name} "
    if cluster is None:
        print(f"no API server or operator (berth-lab {flag}up --cluster brings a lab with them)")
        return
    print(f"kube-apiserver {cluster['server']}  {_running(cluster['apiserver'])}")
    operator = cluster["operator"]
    print(
        f"operator       {_running(operator)}, all namespaces, log {operator['log']}"
        + ("" if operator["running"] else f"; start it: berth-lab {flag}operator restart")
    )
    print(f"dns (named)    {cluster['dns']['address']}  {_running(cluster['dns'])}")
    print(f"external-dns   {_running(cluster['externalDNS'])}, log {cluster['externalDNS']['log']}")
    print(f"export KUBECONFIG={cluster['kubeconfig']}")


def _running(process: dict[str, Any]) -> str:
    return f"running (pid {process['pid']})" if process["running"] else "NOT running"


if __name__ == "__main__":
    sys.exit(main())
