"""Whether a person's session request is signed, and for which machine (pure).

The API server has said whether the person may (a SubjectAccessReview); the operator's
inventories say where the repository runs. The grant names that one machine: a session
never opens an agent the repository does not run on.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from berth_common.agent_api.models import RepositoryStatus
from berth_common.sessions import SessionGrant, SessionRequest
from berth_operator.migration.state import TERMINAL
from berth_operator.placement.observe import copies_of


@dataclass(frozen=True)
class Requester:
    """Who asked, as the API server recorded it in the CSR's spec (not forgeable)."""

    username: str
    uid: str = ""
    groups: tuple[str, ...] = ()
    extra: tuple[tuple[str, tuple[str, ...]], ...] = ()


@dataclass(frozen=True)
class Review:
    """The SubjectAccessReview's answer."""

    allowed: bool
    reason: str = ""


@dataclass(frozen=True)
class Whereabouts:
    """The placement as the operator holds it: its repository, and the machines whose
    agents last reported it running (not frozen, not a stale copy)."""

    exists: bool
    repository: str = ""
    running_on: tuple[str, ...] = ()
    moving: str | None = None  # the migration's phase, while one is in flight


@dataclass(frozen=True)
class Sign:
    grant: SessionGrant


@dataclass(frozen=True)
class Deny:
    reason: str
    message: str


def decide_session(
    request: SessionRequest, requester: Requester, review: Review, where: Whereabouts
) -> Sign | Deny:
    verb, subresource = request.verb.permission
    target = f'"{request.placement}" in namespace "{request.namespace}"'
    if not review.allowed:
        # Before anything about the placement: no answer tells an outsider it exists.
        why = f": {review.reason}" if review.reason else ""
        return Deny(
            "Forbidden",
            f'user "{requester.username}" cannot {verb} resource '
            f'"repositoryplacements/{subresource}" {target}{why}',
        )
    if not where.exists:
        return Deny("NotFound", f"repositoryplacement {target} not found")
    if not where.running_on:
        # While a move is frozen its repository runs nowhere; `logs -f` asks again.
        moving = f" (moving: {where.moving})" if where.moving else ""
        return Deny("NotRunning", f"{where.repository} is not running on any machine{moving}")
    if len(where.running_on) > 1:
        # A move runs it on one machine at a time, but the source's inventory can say
        # "running" for a moment after the target's says so too: refuse rather than guess
        # (`logs -f` asks again).
        machines = ", ".join(where.running_on)
        return Deny("Ambiguous", f"{where.repository} is reported running on {machines}")
    return Sign(
        SessionGrant(
            machine=where.running_on[0],
            repository=where.repository,
            verb=request.verb,
            namespace=request.namespace,
            placement=request.placement,
            user=requester.username,
            groups=requester.groups,
        )
    )


def whereabouts(
    placement: dict[str, Any] | None, holders: Mapping[str, RepositoryStatus]
) -> Whereabouts:
    """The placement's Whereabouts from the cache and from the inventories' holders of
    its repository (machine -> entry)."""
    if placement is None:
        return Whereabouts(exists=False)
    migration = (placement.get("status") or {}).get("migration") or {}
    phase = migration.get("phase")
    running = tuple(c.machine for c in copies_of(holders) if c.running and not c.stale)
    return Whereabouts(
        exists=True,
        repository=placement["spec"]["repository"],
        running_on=running,
        moving=phase if phase and phase not in TERMINAL else None,
    )
