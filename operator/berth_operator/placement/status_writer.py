"""Writing a placement's status: only what changed, and only if anything did.

The status to compare with is the newest the operator knows: the cache holds the API
server's answer to berth's own last write as soon as it is given, so a write is never
skipped because of a watch event still on its way.
"""

from __future__ import annotations

import logging
from typing import Any

from berth_api.v1alpha1.placement_types import RepositoryPlacementStatus
from berth_operator.controller.cache import ObjectCache
from berth_operator.kube import Kube, ObjectChanged
from berth_operator.placement.status import merge_patch

log = logging.getLogger("berth.operator.placement")
PlacementKey = tuple[str, str]  # namespace, name


class PlacementChanged(Exception):
    """A guarded status write found the placement changed; the cache holds it as it is."""


def placement_key(obj: dict[str, Any]) -> PlacementKey:
    meta = obj["metadata"]
    return meta.get("namespace") or "", meta["name"]


class StatusWriter:
    def __init__(self, kube: Kube, placements: ObjectCache[PlacementKey]) -> None:
        self.kube, self.placements = kube, placements

    def write(
        self, key: PlacementKey, status: RepositoryPlacementStatus, *, guarded: bool = False
    ) -> bool:
        """Patch status to `status` if it differs from the cached object's; True if a
        patch was sent. The answer replaces the cached object.

        guarded: only if the placement is still as the cache holds it. If anything changed
        it (a person's edit on its way through the watch), the placement is read again into
        the cache and PlacementChanged raised: the caller decides again from what is there."""
        current = self.placements.get(key)
        if current is None:
            return False  # deleted meanwhile
        patch = merge_patch(current.get("status") or {}, status.wire())
        if not patch:
            return False
        namespace, name = key
        version = current["metadata"]["resourceVersion"] if guarded else None
        try:
            answer = self.kube.patch_placement_status(namespace, name, patch, version)
        except ObjectChanged:
            fresh = self.kube.placement(namespace, name)
            if fresh is not None:
                self.placements.store(fresh)
            raise PlacementChanged(
                f"{namespace}/{name} changed while it was being written"
            ) from None
        if answer is not None:
            self.placements.store(answer)
        return True
