"""What each machine holds, as its agent last listed it.

Filled by the heartbeats (every beat lists the machine's repositories anyway) and by
berth's own actions, which look again at the machines they changed before deciding
anything else about them. Placements read from here, never from the agents: a settled
placement costs nothing. A look that differs from the last one, for a repository, is
reported to whoever must reconcile the placements of that repository.

Reading never waits for a look in progress: a decision made while a machine is being
asked again uses the last answer, as it would had it come a moment earlier. Only the
looks themselves queue, one at a time per machine.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from berth_common.agent_api.errors import AgentError, describe
from berth_common.agent_api.models import RepositoryStatus

Entry = RepositoryStatus  # one repository as the agent lists it


class InventoryUnavailable(RuntimeError):
    """The machine's agent did not answer the last look: what it holds is unknown."""


@dataclass(frozen=True)
class Look:
    """One look at a machine: what its agent listed, or why it listed nothing."""

    entries: tuple[Entry, ...] | None
    error: str | None = None


def summary(entry: Entry) -> tuple[object, ...]:
    """What about a listed repository matters to its placement."""
    containers = tuple(sorted((c.name, c.state) for c in entry.containers))
    return (entry.guid, entry.mounted, entry.docker.running, containers, entry.moved_to)


def changed_names(before: Look | None, after: Look) -> set[str]:
    """Repositories whose entry differs between two looks (every repository of a first
    look; an unanswered look differs from every answered one)."""
    if before is not None and _same(before.entries, after.entries):
        return set()  # the agent's 304: the very same entries again
    old = {e.name: summary(e) for e in (before.entries if before else None) or ()}
    new = {e.name: summary(e) for e in after.entries or ()}
    if before is None or (before.entries is None) != (after.entries is None):
        return set(old) | set(new)
    return {name for name in old.keys() | new.keys() if old.get(name) != new.get(name)}


class Inventories:
    def __init__(self, ask: Callable[[str], list[Entry]]) -> None:
        self._ask = ask
        self._lock = threading.Lock()  # guards the three maps below; never held while asking
        self._looks: dict[str, Look] = {}  # each replaced whole by the next look
        self._holders: dict[str, dict[str, Entry]] = {}  # repository -> machine -> entry
        self._asking: dict[str, threading.Lock] = {}  # one look at a time per machine

    def get(self, machine: str) -> tuple[Entry, ...]:
        """The last look at machine (taken now if there was none); raises
        InventoryUnavailable if its agent did not answer it."""
        look = self._looks.get(machine)
        if look is None:
            with self._asking_lock(machine):
                look = self._looks.get(machine)
                if look is None:
                    look = self._ask_now(machine)
                    self._keep(machine, look)
        if look.entries is None:
            raise InventoryUnavailable(look.error or f"{machine}: never listed")
        return look.entries

    def holders(self, repository: str) -> dict[str, Entry]:
        """The machines whose last look listed repository, with its entry there."""
        with self._lock:
            return dict(self._holders.get(repository, {}))

    def unknown(self, machines: Iterable[str]) -> set[str]:
        """Those of machines whose holdings are unknown: their last look got no answer
        (one never looked at is looked at now)."""
        unknown = set()
        for name in machines:
            try:
                self.get(name)
            except InventoryUnavailable:
                unknown.add(name)
        return unknown

    def refresh(self, machine: str) -> set[str]:
        """Look now; the repositories whose entry changed."""
        with self._asking_lock(machine):
            return self._keep(machine, self._ask_now(machine))

    def record(self, machine: str, entries: list[Entry] | None, error: str | None) -> set[str]:
        """A look taken elsewhere (by a heartbeat); the repositories whose entry changed."""
        with self._asking_lock(machine):
            return self._keep(machine, Look(_frozen(entries), error))

    def forget(self, machine: str) -> None:
        with self._lock:
            look = self._looks.pop(machine, None)
            self._asking.pop(machine, None)
            self._unindex(machine, look)

    def _asking_lock(self, machine: str) -> threading.Lock:
        with self._lock:
            return self._asking.setdefault(machine, threading.Lock())

    def _ask_now(self, machine: str) -> Look:
        try:
            return Look(_frozen(self._ask(machine)))
        except (AgentError, OSError) as err:
            return Look(None, describe(err))

    def _keep(self, machine: str, look: Look) -> set[str]:
        with self._lock:
            before = self._looks.get(machine)
            answered = look.entries is not None
            if before is not None and answered and _same(before.entries, look.entries):
                return set()  # the agent's 304: the very same entries, indexed already
            self._unindex(machine, before)
            self._looks[machine] = look
            for entry in look.entries or ():
                self._holders.setdefault(entry.name, {})[machine] = entry
        return changed_names(before, look)

    def _unindex(self, machine: str, look: Look | None) -> None:
        for entry in (look.entries or ()) if look is not None else ():
            holders = self._holders.get(entry.name, {})
            holders.pop(machine, None)
            if not holders:
                self._holders.pop(entry.name, None)


def _frozen(entries: list[Entry] | None) -> tuple[Entry, ...] | None:
    return tuple(entries) if entries is not None else None


def _same(a: tuple[Entry, ...] | None, b: tuple[Entry, ...] | None) -> bool:
    if a is None or b is None:
        return a is b
    return len(a) == len(b) and all(x is y for x, y in zip(a, b, strict=True))
