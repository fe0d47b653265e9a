"""kubectl berth: move repositories between machines and follow the moves.

kubectl berth migrate NAME --to MACHINE [--no-checkpoint] [--memory MODE] [--skip-dns] [--wait]
kubectl berth cancel NAME [--wait]    # stop a move before its commit point (the freeze)
kubectl berth list | status NAME | history NAME | machines
kubectl berth logs NAME [CONTAINER] [--tail N] [-f]   # wherever it runs, across moves
kubectl berth exec NAME -- docker ARGS...           # against the repository's own dockerd
kubectl berth cordon|uncordon|drain MACHINE
kubectl berth pki init DIR            # the berth CA and the operator's certificate
kubectl berth enroll MACHINE --address ADDR --pki DIR --out BUNDLE   # a new host
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from kubectl_berth import enroll, render, repos, session_commands
from kubectl_berth.client import Berth, CLIError, PlacementChanged
from kubectl_berth.drain import plan_drain
from kubectl_berth.follow import MigrationFailed, follow, wait_ended
from kubectl_berth.preconditions import cancel_refusal, moved_from_refusal


def _parser() -> argparse.ArgumentParser:
    # Like kubectl, the connection flags go before or after the command.
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--kubeconfig", default=argparse.SUPPRESS, help="default: $KUBECONFIG or ~/.kube/config"
    )
    common.add_argument("--context", default=argparse.SUPPRESS)
    common.add_argument(
        "-n", "--namespace", default=argparse.SUPPRESS, help="default: the context's namespace"
    )
    parser = argparse.ArgumentParser(
        prog="kubectl berth",
        description=__doc__,
        parents=[common],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True)

    def command(name: str, **kwargs: Any) -> argparse.ArgumentParser:
        return sub.add_parser(name, parents=[common], **kwargs)

    def with_output(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
        p.add_argument("-o", "--output", choices=["text", "json", "yaml"], default="text")
        return p

    migrate = command("migrate", help="move a repository to another machine")
    migrate.add_argument("name")
    migrate.add_argument("--to", required=True, metavar="MACHINE")
    migrate.add_argument(
        "--from",
        dest="source",
        metavar="MACHINE",
        help="refuse unless it runs on MACHINE now and nobody has asked to move it (the "
        "write fails if the placement changes in between)",
    )
    checkpoint = migrate.add_mutually_exclusive_group()
    checkpoint.add_argument(
        "--checkpoint",
        action="store_true",
        help="keep processes' memory across the move (the default; sets spec.checkpoint)",
    )
    checkpoint.add_argument(
        "--no-checkpoint",
        action="store_true",
        help="stop and restart instead of keeping processes' memory",
    )
    migrate.add_argument(
        "--memory",
        choices=["freeze", "postcopy", "auto"],
        help="when checkpointed memory moves: inside the freeze, or after it (sets "
        "spec.memory; see docs/api.md)",
    )
    migrate.add_argument(
        "--skip-dns",
        action="store_true",
        help="leave spec.dns's records where they point (sets spec.dns.skip)",
    )
    migrate.add_argument("--wait", action="store_true", help="follow the migration to its end")
    migrate.add_argument("--timeout", type=float, default=900)
    cancel = with_output(
        command("cancel", help="stop a move before its commit point; it stays where it runs")
    )
    cancel.add_argument("name")
    cancel.add_argument("--wait", action="store_true", help="until it has ended and is Ready")
    cancel.add_argument("--timeout", type=float, default=300)
    lst = with_output(command("list", help="placements"))
    lst.add_argument("-A", "--all-namespaces", action="store_true")
    with_output(command("status", help="a placement in detail")).add_argument("name")
    with_output(command("history", help="a placement's migrations")).add_argument("name")
    with_output(command("machines", help="machines and their health"))
    listing = with_output(
        command("repos", help="every repository on each machine, as its heartbeat reported it")
    )
    listing.add_argument("--machine", metavar="MACHINE", help="only this machine")
    for verb, text in (
        ("cordon", "no repository moves onto it"),
        ("uncordon", "accept repositories again"),
        ("drain", "cordon, then move every placement off it"),
    ):
        p = command(verb, help=text)
        p.add_argument("machine")
        if verb == "drain":
            p.add_argument("--wait", action="store_true")
    logs = command("logs", help="a repository's container logs, wherever it runs")
    logs.add_argument("name")
    logs.add_argument("container", nargs="?", help="default: every container, each prefixed")
    logs.add_argument("--tail", type=int, default=100, help="lines from the end (1-10000)")
    logs.add_argument(
        "-f", "--follow", action="store_true", help="stream on, across moves, until interrupted"
    )
    run = command("exec", help="run a docker command against the repository's own dockerd")
    run.add_argument("name")
    run.add_argument("argv", nargs="*", help="-- docker ARGS... (after --, as with kubectl exec)")
    pki = command("pki", help="the berth CA (needs no cluster)")
    pki.add_argument(
        "action",
        choices=["init", "metrics"],
        help="init: the CA and the operator's certificate; metrics: Prometheus's certificate",
    )
    pki.add_argument(
        "directory", type=Path, help="the CA's directory (ca.crt, ca.key): init makes it"
    )
    join = with_output(command("enroll", help="certificate bundle and Machine for a new host"))
    join.add_argument("machine", help="the Machine's name, e.g. host-c")
    join.add_argument("--address", required=True, help="IP or DNS name the agent answers on")
    join.add_argument("--port", type=int, default=7443)
    join.add_argument("--dns", action="append", default=[], help="extra DNS names to certify")
    join.add_argument("--pki", type=Path, required=True, help="the directory of pki init")
    join.add_argument("--out", type=Path, required=True, help="bundle file to write (0600)")
    join.add_argument("--capacity-bytes", type=int, default=None)
    join.add_argument(
        "--dry-run", action="store_true", help="write the bundle, print the Machine, create nothing"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    # What follows `--` is exec's command, untouched (its options are docker's, and the
    # flags before it, -n included, are ours wherever they stand).
    given = list(sys.argv[1:] if argv is None else argv)
    command = given[given.index("--") + 1 :] if "--" in given else []
    args = _parser().parse_args(given[: given.index("--")] if "--" in given else given)
    if args.command == "exec":
        args.argv = [*args.argv, *command]
    elif command:
        print(f"error: kubectl berth {args.command} takes no command after --", file=sys.stderr)
        return 1
    try:
        if args.command == "pki" or (args.command == "enroll" and args.dry_run):
            return LOCAL_COMMANDS[args.command](None, "", args)
        berth = Berth(getattr(args, "kubeconfig", None), getattr(args, "context", None))
        namespace = getattr(args, "namespace", None) or berth.default_namespace
        return COMMANDS[args.command](berth, namespace, args)
    except CLIError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(
            "\ninterrupted: the migration goes on; follow it with kubectl berth status",
            file=sys.stderr,
        )
        return 130


def _output(args: argparse.Namespace, data: Any, text: str) -> int:
    print(text if args.output == "text" else render.dump(data, args.output))
    return 0


CHECKED_WRITE_ATTEMPTS = 10


def write_checked(
    berth: Berth,
    obj: dict[str, Any],
    spec: dict[str, Any],
    refusal: Callable[[dict[str, Any]], str | None],
    refused: str,
) -> dict[str, Any]:
    """Patch spec onto the placement only while refusal(placement) is None.

    Each write carries the resourceVersion its check read, so a change in between is
    refused by the API server. The operator's status writes (a bulk round's progress,
    each second) change the resourceVersion too; so a refused write reads the placement
    again and checks again, rather than giving up on a change that does not matter.
    """
    namespace, name = obj["metadata"]["namespace"], obj["metadata"]["name"]
    for _ in range(CHECKED_WRITE_ATTEMPTS - 1):
        try:
            return berth.patch_placement(
                namespace, name, spec, resource_version=obj["metadata"]["resourceVersion"]
            )
        except PlacementChanged:
            obj = berth.placement(namespace, name)
            why = refusal(obj)
            if why:
                raise CLIError(f"{why}: {refused}") from None
    return berth.patch_placement(
        namespace, name, spec, resource_version=obj["metadata"]["resourceVersion"]
    )


def cmd_migrate(berth: Berth, namespace: str, args: argparse.Namespace) -> int:
    obj = berth.placement(namespace, args.name)
    if args.source is not None:
        refusal = moved_from_refusal(obj, args.source)
        if refusal:
            raise CLIError(f"{refusal}: not moved (--from {args.source})")
    target = berth.machine(args.to)
    current = (obj.get("status") or {}).get("currentMachine")
    if obj["spec"]["machine"] == args.to and current == args.to:
        raise CLIError(f"{args.name} already runs on {args.to}")
    if target["spec"].get("cordoned"):
        raise CLIError(f"machine {args.to} is cordoned; uncordon it first")
    if render.condition(target, "Ready").get("status") != "True":
        raise CLIError(
            f"machine {args.to} is not Ready: "
            f"{render.condition(target, 'Ready').get('message', 'no heartbeat')}"
        )
    spec: dict[str, Any] = {"machine": args.to}
    if args.no_checkpoint or args.checkpoint:
        spec["checkpoint"] = args.checkpoint
    if args.memory:
        spec["memory"] = args.memory
    if args.skip_dns:
        if not obj["spec"].get("dns"):
            raise CLIError(f"{args.name} has no spec.dns: there are no DNS records to leave")
        spec["dns"] = {"skip": True}
    if args.source is not None:
        source = args.source

        def still_there(now: dict[str, Any]) -> str | None:
            return moved_from_refusal(now, source)

        patched = write_checked(berth, obj, spec, still_there, f"not moved (--from {source})")
    else:
        patched = berth.patch_placement(namespace, args.name, spec)
    generation = int(patched["metadata"]["generation"])
    print(
        f"{namespace}/{args.name}: spec.machine {obj['spec']['machine']} -> {args.to} "
        f"(generation {generation})"
    )
    if args.skip_dns:
        print("spec.dns.skip: true: DNS records stay as they are (set it false to follow again)")
    if not args.wait:
        print(f"follow it: kubectl berth status {args.name} -n {namespace}")
        return 0
    follow(berth, namespace, args.name, generation, timeout=args.timeout)
    return 0


def cmd_cancel(berth: Berth, namespace: str, args: argparse.Namespace) -> int:
    obj = berth.placement(namespace, args.name)
    refusal = cancel_refusal(obj)
    if refusal:
        raise CLIError(f"{refusal}: nothing changed")
    migration = obj["status"]["migration"]
    source, moving = migration["source"], migration["id"]

    def refusal_now(now: dict[str, Any]) -> str | None:
        still = ((now.get("status") or {}).get("migration") or {}).get("id") == moving
        return cancel_refusal(now) if still else f"{args.name}'s move {moving} has ended"

    # The same as setting spec.machine back by hand, but written only onto a placement
    # whose move is still before its commit point.
    if obj["spec"]["machine"] != source:
        write_checked(berth, obj, {"machine": source}, refusal_now, "nothing changed")
    report: dict[str, Any] = {
        "placement": f"{namespace}/{args.name}", "migration": moving, "from": source,
        "to": migration["target"], "phase": migration["phase"], "requested": True,
    }  # fmt: skip
    if args.output == "text":
        print(
            f"{namespace}/{args.name}: cancelling {moving} ({source} -> {migration['target']}, "
            f"phase {migration['phase']}): spec.machine -> {source}"
        )
    if not args.wait:
        return _output(args, report, f"follow it: kubectl berth status {args.name} -n {namespace}")
    try:
        last = wait_ended(berth, namespace, args.name, moving, timeout=args.timeout)
    except MigrationFailed as err:
        raise CLIError(str(err)) from None
    report.update(result=last.get("result"), reason=last.get("reason"))
    if last.get("result") != "Cancelled":  # the commit point came first after all
        _output(args, report, f"{moving} was not cancelled: it ended {last.get('result')}")
        return 1
    return _output(args, report, f"{moving} {last.get('reason')}; {args.name} runs on {source}")


def cmd_list(berth: Berth, namespace: str, args: argparse.Namespace) -> int:
    items = berth.placements(None if args.all_namespaces else namespace)
    return _output(
        args,
        items,
        render.table(render.PLACEMENT_HEADERS, [render.placement_row(o) for o in items]),
    )


def cmd_status(berth: Berth, namespace: str, args: argparse.Namespace) -> int:
    obj = berth.placement(namespace, args.name)
    return _output(args, obj, render.status_text(obj))


def cmd_history(berth: Berth, namespace: str, args: argparse.Namespace) -> int:
    obj = berth.placement(namespace, args.name)
    history = (obj.get("status") or {}).get("history", [])
    return _output(args, history, render.table(render.HISTORY_HEADERS, render.history_rows(obj)))


def _in_flight(berth: Berth) -> dict[str, int]:
    counts: dict[str, int] = {}
    for p in berth.placements(None):
        migration = (p.get("status") or {}).get("migration")
        if migration:
            for machine in (migration["source"], migration["target"]):
                counts[machine] = counts.get(machine, 0) + 1
    return counts


def cmd_machines(berth: Berth, namespace: str, args: argparse.Namespace) -> int:
    machines = berth.machines()
    counts = _in_flight(berth)
    rows = [render.machine_row(m, counts.get(m["metadata"]["name"], 0)) for m in machines]
    return _output(args, machines, render.table(render.MACHINE_HEADERS, rows))


def cmd_repos(berth: Berth, namespace: str, args: argparse.Namespace) -> int:
    machines = [berth.machine(args.machine)] if args.machine else berth.machines()
    entries = repos.held(machines, berth.placements(None))
    text = render.table(repos.HEADERS, [repos.row(e) for e in entries])
    if not entries:
        text = "no repositories" + (f" on {args.machine}" if args.machine else "")
    return _output(args, entries, text)


def cmd_cordon(berth: Berth, namespace: str, args: argparse.Namespace) -> int:
    cordon = args.command != "uncordon"
    berth.machine(args.machine)
    berth.patch_machine(args.machine, {"cordoned": cordon})
    print(f"machine {args.machine} {'cordoned' if cordon else 'uncordoned'}")
    return 0


def cmd_drain(berth: Berth, namespace: str, args: argparse.Namespace) -> int:
    berth.machine(args.machine)
    berth.patch_machine(args.machine, {"cordoned": True})
    print(f"machine {args.machine} cordoned")
    candidates = {
        m["metadata"]["name"]: len((m.get("status") or {}).get("repositories") or [])
        for m in berth.machines()
        if m["metadata"]["name"] != args.machine
        and not m["spec"].get("cordoned")
        and render.condition(m, "Ready").get("status") == "True"
    }
    placements = {
        f"{p['metadata']['namespace']}/{p['metadata']['name']}": p for p in berth.placements(None)
    }
    current = [
        (key, (p.get("status") or {}).get("currentMachine") or p["spec"]["machine"])
        for key, p in placements.items()
    ]
    try:
        plan = plan_drain(args.machine, current, candidates)
    except ValueError as err:
        raise CLIError(str(err)) from None
    generations = {}
    for key, target in plan.items():
        ns, name = key.split("/", 1)
        patched = berth.patch_placement(ns, name, {"machine": target})
        generations[key] = int(patched["metadata"]["generation"])
        print(f"{key}: -> {target}")
    if not plan:
        print("nothing to move")
    if args.wait:  # the operator's concurrency limits decide the order; follow each in turn
        for key, generation in generations.items():
            ns, name = key.split("/", 1)
            follow(berth, ns, name, generation)
    return 0


def cmd_logs(berth: Berth, namespace: str, args: argparse.Namespace) -> int:
    if not 1 <= args.tail <= 10000:
        raise CLIError("--tail must be between 1 and 10000")
    return session_commands.run_logs(
        berth, namespace, args.name, args.container, args.tail, args.follow
    )


def cmd_exec(berth: Berth, namespace: str, args: argparse.Namespace) -> int:
    return session_commands.run_exec(berth, namespace, args.name, args.argv)


def cmd_pki(_: Berth | None, namespace: str, args: argparse.Namespace) -> int:
    if args.action == "metrics":
        for path in enroll.pki_metrics(args.directory):
            print(f"wrote {path}")
        print(
            "\nPrometheus scrapes each agent's https://HOST:7443/metrics with it (and ca.crt);\n"
            "agents refuse it every other route. See docs/operations.md."
        )
        return 0
    for path in enroll.pki_init(args.directory):
        print(f"wrote {path}")
    d = args.directory
    print(
        "\nGive the operator its certificate and the CA (keep ca.key offline):\n"
        f"  helm install berth charts/berth -n berth-system --create-namespace \\\n"
        f"    --set-file operatorTLS.cert={d}/operator.crt"
        f" --set-file operatorTLS.key={d}/operator.key \\\n"
        f"    --set-file agentsCA.cert={d}/ca.crt \\\n"
        f"    --set-file sessionsCA.cert={d}/sessions-ca.crt"
        f" --set-file sessionsCA.key={d}/sessions-ca.key\n"
        "\nFor kubectl berth logs/exec, agents trust the sessions CA: the bundles of\n"
        "kubectl berth enroll carry it (hosts enrolled before: copy sessions-ca.crt to\n"
        "/etc/berth/tls/ and set tls.session_ca in /etc/berth/agent.yaml)."
    )
    return 0


def cmd_enroll(berth: Berth | None, namespace: str, args: argparse.Namespace) -> int:
    if args.out.exists():
        raise CLIError(f"{args.out} exists; refusing to overwrite a bundle (it holds a key)")
    bundle = enroll.issue_bundle(args.pki, args.machine, args.address, args.port, tuple(args.dns))
    machine = enroll.build_machine(bundle, args.capacity_bytes)
    created = False
    bundle.write(args.out)
    if berth is not None:  # not --dry-run
        try:
            machine, created = berth.create_or_update_machine(machine)
        except CLIError:
            args.out.unlink()  # no bundle for a Machine that does not exist
            raise
    verb = "would create" if berth is None else ("created" if created else "updated")
    text = (
        f"machine {bundle.name} {verb} (endpoint {bundle.endpoint}); bundle: {args.out}\n"
        f"on the host: berth-agent install --bundle {args.out.name}"
    )
    return _output(args, {"machine": machine, "bundle": str(args.out), "created": created}, text)


COMMANDS = {
    "migrate": cmd_migrate,
    "cancel": cmd_cancel,
    "list": cmd_list,
    "status": cmd_status,
    "history": cmd_history,
    "machines": cmd_machines,
    "repos": cmd_repos,
    "logs": cmd_logs,
    "exec": cmd_exec,
    "cordon": cmd_cordon,
    "uncordon": cmd_cordon,
    "drain": cmd_drain,
    "enroll": cmd_enroll,
}
LOCAL_COMMANDS = {"pki": cmd_pki, "enroll": cmd_enroll}


if __name__ == "__main__":
    sys.exit(main())
