"""What the watches have seen, kept in memory: the operator reads from here, never by
listing the API server again.

Objects are stored as the API server sent them (plain dicts, read-only by convention).
A store keeps the newer of two versions of an object, so the answer to berth's own write
(which may arrive before the watch event that precedes it) is never undone by that event.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable, Iterable, Mapping
from typing import Any, Generic, TypeVar

K = TypeVar("K", bound=Hashable)
Obj = dict[str, Any]
Indexer = Callable[[Obj], Iterable[str]]


def resource_version(obj: Obj) -> int:
    """etcd's revision, as the API server writes it; -1 when absent or not a number."""
    text = str((obj.get("metadata") or {}).get("resourceVersion") or "")
    return int(text) if text.isdigit() else -1


class ObjectCache(Generic[K]):
    def __init__(self, key_of: Callable[[Obj], K], indexers: Mapping[str, Indexer]) -> None:
        self._key_of, self._indexers = key_of, indexers
        self._lock = threading.Lock()
        self._objects: dict[K, Obj] = {}
        self._index: dict[str, dict[str, set[K]]] = {name: {} for name in indexers}
        self._entries: dict[K, dict[str, tuple[str, ...]]] = {}  # each key's index values

    def store(self, obj: Obj) -> Obj | None:
        """Keep obj unless an newer version is kept; returns what was kept before."""
        key = self._key_of(obj)
        with self._lock:
            old = self._objects.get(key)
            if old is not None and resource_version(old) > resource_version(obj) >= 0:
                return old
            self._objects[key] = obj
            self._reindex(key, obj)
            return old

    def delete(self, key: K) -> Obj | None:
        with self._lock:
            old = self._objects.pop(key, None)
            self._reindex(key, None)
            return old

    def get(self, key: K) -> Obj | None:
        with self._lock:
            return self._objects.get(key)

    def key_list(self) -> list[K]:
        with self._lock:
            return list(self._objects)

    def values(self) -> list[Obj]:
        with self._lock:
            return list(self._objects.values())

    def by(self, index: str, value: str) -> set[K]:
        with self._lock:
            return set(self._index[index].get(value, ()))

    def index(self, name: str) -> dict[str, set[K]]:
        """A copy of a whole index (value -> keys), taken at one instant."""
        with self._lock:
            return {value: set(keys) for value, keys in self._index[name].items()}

    def _reindex(self, key: K, obj: Obj | None) -> None:
        previous = self._entries.pop(key, {})
        for name, values in previous.items():
            for value in values:
                keys = self._index[name].get(value)
                if keys is not None:
                    keys.discard(key)
                    if not keys:
                        del self._index[name][value]
        if obj is None:
            return
        entries: dict[str, tuple[str, ...]] = {}
        for name, indexer in self._indexers.items():
            values = tuple(sorted(set(indexer(obj))))
            entries[name] = values
            for value in values:
                self._index[name].setdefault(value, set()).add(key)
        self._entries[key] = entries
