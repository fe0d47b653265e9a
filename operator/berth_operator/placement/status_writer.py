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
from berth_operator.kube import Kube
from berth_operator.placement.status import merge_patch

log = logging.getLogger("berth.operator.placement")
PlacementKey = tuple[str, str]  # namespace, name


def placement_key(obj: dict[str, Any]) -> PlacementKey:
    meta = obj["metadata"]
    return meta.get("namespace") or "", meta["name"]


class StatusWriter:
    def __init__(self, kube: Kube, placements: ObjectCache[PlacementKey]) -> None:
        self.kube, self.placements = kube, placements

    def write(self, key: PlacementKey, status: RepositoryPlacementStatus) -> bool:
        """Patch status to `status` if it differs from the cached object's; True if a
        patch was sent. The answer replaces the cached object."""
        current = self.placements.get(key)
        if current is None:
            return False  # deleted meanwhile
        patch = merge_patch(current.get("status") or {}, status.wire())
        if not patch:
            return False
        namespace, name = key
        answer = self.kube.patch_placement_status(namespace, name, patch)
        if answer is not None:
            self.placements.store(answer)
        return True
