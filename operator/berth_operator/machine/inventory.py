"""What each machine holds, as its agent last listed it.

Filled by the heartbeats (every beat lists the machine's repositories anyway) and by
berth's own actions, which look again at the machines they changed before deciding
anything else about them. Placements read from here, never from the agents: a settled
placement costs nothing. A look that differs from the last one, for a repository, is
reported to whoever must reconcile the placements of that repository.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from berth_common.agent_api.errors import AgentError, describe
from berth_common.agent_api.models import RepositoryStatus

Entry = RepositoryStatus  # one repository as the agent lists it


class InventoryUnavailable(RuntimeError):
    """The machine's agent did not answer the last look: what it holds is unknown."""


def summary(entry: Entry) -> tuple[object, ...]:
    """What about a listed repository matters to its placement."""
    containers = tuple(sorted((c.name, c.state) for c in entry.containers))
    return (entry.guid, entry.mounted, entry.docker.running, containers, entry.moved_to)


def changed_names(before: list[Entry] | None, after: list[Entry] | None) -> set[str]:
    """Repositories whose entry differs between two looks (an unknown look differs from
    every known one)."""
    old = {e.name: summary(e) for e in before or []}
    new = {e.name: summary(e) for e in after or []}
    if (before is None) != (after is None):
        return set(old) | set(new)
    return {name for name in old.keys() | new.keys() if old.get(name) != new.get(name)}


class _Look:
    def __init__(self) -> None:
        self.lock = threading.Lock()  # one look at a time per machine
        self.entries: list[Entry] | None = None
        self.error: str | None = None
        self.looked = False


class Inventories:
    def __init__(self, ask: Callable[[str], list[Entry]]) -> None:
        self._ask = ask
        self._looks: dict[str, _Look] = {}
        self._lock = threading.Lock()

    def _look(self, machine: str) -> _Look:
        with self._lock:
            return self._looks.setdefault(machine, _Look())

    def get(self, machine: str) -> list[Entry]:
        """The last look at machine (taken now if there was none); raises
        InventoryUnavailable if its agent did not answer it."""
        look = self._look(machine)
        with look.lock:
            if not look.looked:
                self._take(machine, look)
            if look.entries is None:
                raise InventoryUnavailable(look.error or f"{machine}: never listed")
            return look.entries

    def refresh(self, machine: str) -> set[str]:
        """Look now; the repositories whose entry changed."""
        look = self._look(machine)
        with look.lock:
            return self._take(machine, look)

    def record(self, machine: str, entries: list[Entry] | None, error: str | None) -> set[str]:
        """A look taken elsewhere (by a heartbeat); the repositories whose entry changed."""
        look = self._look(machine)
        with look.lock:
            return self._keep(look, entries, error)

    def forget(self, machine: str) -> None:
        with self._lock:
            self._looks.pop(machine, None)

    def _take(self, machine: str, look: _Look) -> set[str]:
        try:
            entries, error = self._ask(machine), None
        except (AgentError, OSError) as err:
            entries, error = None, describe(err)
        return self._keep(look, entries, error)

    @staticmethod
    def _keep(look: _Look, entries: list[Entry] | None, error: str | None) -> set[str]:
        changed = changed_names(look.entries, entries) if look.looked else set()
        if not look.looked:
            changed = {e.name for e in entries or []}
        look.entries, look.error, look.looked = entries, error, True
        return changed
