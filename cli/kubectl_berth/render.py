"""What the CLI prints (pure): tables, progress bars, one-line summaries."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import yaml

from berth_common.units import human_bytes


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    cells = [[str(h) for h in headers]] + [["" if c is None else str(c) for c in r] for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    return "\n".join(
        "   ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in cells
    )


def dump(data: Any, fmt: str) -> str:
    if fmt == "json":
        return json.dumps(data, indent=2, default=str)
    return yaml.safe_dump(data, sort_keys=False).rstrip()


def condition(obj: dict[str, Any], type_: str) -> dict[str, Any]:
    for c in (obj.get("status") or {}).get("conditions", []):
        if c.get("type") == type_:
            return dict(c)
    return {}


def seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}s"


def progress_bar(done: int, total: int, rate: float, width: int = 30) -> str:
    total = max(total, 1)
    filled = int(width * min(done, total) / total)
    eta = (total - done) / rate if rate > 0 else None
    eta_text = f"ETA {eta:4.1f}s" if eta is not None else "ETA   - "
    return (
        f"[{'#' * filled}{'.' * (width - filled)}] {human_bytes(done):>9} / "
        f"{human_bytes(total):<9} {human_bytes(rate)}/s  {eta_text}"
    )


def placement_row(obj: dict[str, Any]) -> list[object]:
    status = obj.get("status") or {}
    last = status.get("lastMigration") or {}
    return [
        obj["metadata"].get("namespace"),
        obj["metadata"]["name"],
        obj["spec"]["machine"],
        status.get("currentMachine") or "-",
        condition(obj, "Ready").get("status", "-"),
        status.get("phase") or "-",
        seconds(last.get("downtimeSeconds")),
    ]


PLACEMENT_HEADERS = ["NAMESPACE", "NAME", "MACHINE", "CURRENT", "READY", "PHASE", "DOWNTIME"]


def history_rows(obj: dict[str, Any]) -> list[list[object]]:
    return [
        [
            h.get("id"),
            h.get("from"),
            h.get("to"),
            h.get("mode"),
            h.get("result"),
            seconds(h.get("downtimeSeconds")),
            human_bytes(h.get("bulkBytes")),
            human_bytes(h.get("deltaBytes")),
            h.get("finishedAt") or "-",
        ]
        for h in (obj.get("status") or {}).get("history", [])
    ]


HISTORY_HEADERS = [
    "MIGRATION",
    "FROM",
    "TO",
    "MODE",
    "RESULT",
    "DOWNTIME",
    "BULK",
    "DELTA",
    "FINISHED",
]


def machine_row(obj: dict[str, Any], migrations: int) -> list[object]:
    status = obj.get("status") or {}
    return [
        obj["metadata"]["name"],
        obj["spec"]["endpoint"],
        condition(obj, "Ready").get("status", "Unknown"),
        "yes" if obj["spec"].get("cordoned") else "no",
        human_bytes(status.get("freeBytes")),
        len(status.get("repositories") or []),
        f"{migrations}/{obj['spec'].get('maxConcurrentMigrations', 1)}",
        status.get("lastHeartbeat") or "-",
    ]


MACHINE_HEADERS = [
    "NAME",
    "ENDPOINT",
    "READY",
    "CORDONED",
    "FREE",
    "REPOS",
    "MIGRATIONS",
    "HEARTBEAT",
]


def observation(obj: dict[str, Any]) -> str | None:
    """Why nothing in status may describe the current spec yet; None when it does.

    An operator can be limited to some namespaces (BERTH_NAMESPACES, the chart's
    watchNamespaces): a placement elsewhere is then never observed, and an empty status
    alone does not say that nothing will ever act on it.
    """
    observed = (obj.get("status") or {}).get("observedGeneration")
    generation = obj["metadata"].get("generation")
    if observed is None or observed < 0:
        namespace = obj["metadata"].get("namespace")
        return (
            "not yet observed by any operator: is one running, and does it watch "
            f"namespace {namespace}?"
        )
    if generation is not None and observed < generation:
        return f"generation {observed} of {generation}: the operator has not yet seen the change"
    return None


def status_text(obj: dict[str, Any]) -> str:
    status = obj.get("status") or {}
    meta = obj["metadata"]
    lines = [
        f"{meta.get('namespace')}/{meta['name']}: repository {obj['spec']['repository']}",
        f"  desired machine  {obj['spec']['machine']}",
        f"  current machine  {status.get('currentMachine') or '-'}",
        f"  phase            {status.get('phase') or '-'}",
    ]
    unobserved = observation(obj)
    if unobserved:
        lines.append(f"  observed         {unobserved}")
    for type_ in ("Ready", "Reconciling", "Stalled"):
        c = condition(obj, type_)
        if c:
            lines.append(
                f"  {type_:16} {c['status']:5} {c.get('reason', '')}"
                + (f": {c['message']}" if c.get("message") else "")
            )
    for e in status.get("endpoints") or []:
        lines.append(
            f"  endpoint         {e['service']} {e['address']}:{e['port']}/{e['protocol']} "
            f"({e['machine']})"
        )
    dns = obj["spec"].get("dns")
    if dns:
        lines.append(
            f"  dns              {', '.join(dns['hostnames'])} (ttl {dns.get('ttl', 60)}s)"
            + (": skipped, records left as they are" if dns.get("skip") else "")
        )
    migration = status.get("migration")
    if migration:
        lines.append(
            f"  migrating        {migration['id']} {migration['source']} -> "
            f"{migration['target']} ({migration['phase']})"
        )
    last = status.get("lastMigration")
    if last:
        lines.append(
            f"  last migration   {last['id']} {last['from']} -> {last['to']} "
            f"{last.get('result')}, downtime {seconds(last.get('downtimeSeconds'))}, "
            f"bulk {human_bytes(last.get('bulkBytes'))}, "
            f"delta {human_bytes(last.get('deltaBytes'))}"
        )
    return "\n".join(lines)
