"""Following a migration live, from the placement's status."""

from __future__ import annotations

import sys
import time
from typing import Any, TextIO

from berth_common.units import human_bytes
from kubectl_berth.client import Berth, CLIError
from kubectl_berth.render import condition, progress_bar, seconds


class MigrationFailed(CLIError):
    pass


def follow(
    berth: Berth,
    namespace: str,
    name: str,
    generation: int,
    timeout: float = 900,
    out: TextIO = sys.stdout,
) -> dict[str, Any]:
    """Print a line per phase and a progress bar; return the migration that succeeded.

    A failed or rolled-back attempt that the operator will retry is reported and followed
    into the next attempt, as `kubectl rollout status` follows a rollout; the placement
    stalling (or an attempt with no retry) ends the wait with MigrationFailed.
    """
    tty = out.isatty()
    retried: set[str] = set()
    deadline = time.monotonic() + timeout
    tracked: str | None = None
    phase: str | None = None
    last_line = 0.0
    started = time.monotonic()
    while time.monotonic() < deadline:
        obj = berth.placement(namespace, name)
        status = obj.get("status") or {}
        if (status.get("observedGeneration") or -1) < generation:
            time.sleep(0.2)
            continue
        migration = status.get("migration")
        if migration:
            if tracked != migration["id"]:
                tracked = migration["id"]
                print(
                    f"migration {tracked}: {migration['source']} -> {migration['target']} "
                    f"({migration['mode']})",
                    file=out,
                )
            if migration["phase"] != phase:
                if phase and tty:
                    print(file=out)
                phase = migration["phase"]
                print(f"  {time.monotonic() - started:6.2f}s  phase {phase}", file=out, flush=True)
            progress = migration.get("progress")
            if progress and phase == "BulkSync":
                line = f"           {progress['label']:6} " + progress_bar(
                    progress["bytes_done"], progress["bytes_total"], progress["rate"]
                )
                if tty:
                    print("\r" + line, end="", file=out, flush=True)
                elif time.monotonic() - last_line > 1:
                    last_line = time.monotonic()
                    print(line, file=out, flush=True)
        last = status.get("lastMigration") or {}
        if tracked and not migration and last.get("id") == tracked:
            if last.get("result") == "Succeeded":
                return _finish(last, out)
            retry = status.get("retry") or {}
            if retry.get("generation") != generation:
                raise _failure(last)  # no attempt follows this one
            if tracked not in retried:
                retried.add(tracked)
                wait = max(0.0, float(retry.get("notBefore", 0)) - time.time())
                print(
                    f"  attempt {retry.get('attempts')} {last.get('result')}: {last.get('reason')}"
                    f"; the source kept running; the operator tries again in {wait:.0f}s",
                    file=out,
                    flush=True,
                )
        stalled = condition(obj, "Stalled")
        if stalled.get("status") == "True" and stalled.get("observedGeneration") == generation:
            raise MigrationFailed(f"stalled: {stalled.get('reason')}: {stalled.get('message')}")
        ready = condition(obj, "Ready")
        if (
            not tracked
            and ready.get("status") == "True"
            and ready.get("observedGeneration") == generation
        ):
            print(f"already on {status.get('currentMachine')}: nothing to move", file=out)
            return {}
        time.sleep(0.1)
    raise MigrationFailed(f"no result after {timeout:.0f}s; see kubectl berth status {name}")


def wait_ended(
    berth: Berth, namespace: str, name: str, migration_id: str, timeout: float = 300
) -> dict[str, Any]:
    """The record of migration `migration_id` once it has ended (lastMigration), and the
    placement Ready again if it ended cancelled."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        obj = berth.placement(namespace, name)
        status = obj.get("status") or {}
        last = status.get("lastMigration") or {}
        if (status.get("migration") or {}).get("id") != migration_id and last.get(
            "id"
        ) == migration_id:
            settled = condition(obj, "Ready").get("status") == "True"
            if last.get("result") != "Cancelled" or settled:
                return dict(last)
        time.sleep(0.2)
    raise MigrationFailed(f"{migration_id} had not ended after {timeout:.0f}s")


def _failure(last: dict[str, Any]) -> MigrationFailed:
    return MigrationFailed(
        f"migration {last['id']} {last.get('result')}: {last.get('reason')}"
        + ("; the source kept running" if last.get("result") else "")
    )


def _finish(last: dict[str, Any], out: TextIO) -> dict[str, Any]:
    """The succeeded migration's summary lines."""
    print(
        f"  cutover: DOWNTIME {seconds(last.get('downtimeSeconds'))}, final delta "
        f"{human_bytes(last.get('deltaBytes'))}, bulk {human_bytes(last.get('bulkBytes'))}, "
        f"checkpoint {seconds(last.get('checkpointSeconds'))}",
        file=out,
    )
    if last.get("postCopyContainers"):
        print(
            f"  post-copy: {', '.join(last['postCopyContainers'])}'s memory followed in "
            f"{seconds(last.get('postCopySeconds'))} after the target answered",
            file=out,
        )
    print(f"moved to {last['to']}", file=out)
    return last
