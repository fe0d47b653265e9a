"""Reading a CertificateSigningRequest object and writing its answer (pure: plain dicts
in, plain dicts out, as the API server speaks them)."""

from __future__ import annotations

import base64
import copy
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from berth_operator.sessions.decide import Requester


class CSRState(StrEnum):
    PENDING = "Pending"  # nobody answered yet
    APPROVED = "Approved"  # approved, no certificate yet (a signer stopped in between)
    ISSUED = "Issued"
    DENIED = "Denied"
    FAILED = "Failed"


@dataclass(frozen=True)
class SessionCSR:
    name: str
    signer: str
    requester: Requester
    request_pem: bytes
    state: CSRState


def read_csr(obj: dict[str, Any]) -> SessionCSR:
    spec, status = obj["spec"], obj.get("status") or {}
    kinds = {c.get("type") for c in status.get("conditions") or [] if c.get("status") != "False"}
    if status.get("certificate"):
        state = CSRState.ISSUED
    elif "Denied" in kinds:
        state = CSRState.DENIED
    elif "Failed" in kinds:
        state = CSRState.FAILED
    elif "Approved" in kinds:
        state = CSRState.APPROVED
    else:
        state = CSRState.PENDING
    extra = tuple(sorted((k, tuple(v)) for k, v in (spec.get("extra") or {}).items()))
    return SessionCSR(
        name=obj["metadata"]["name"],
        signer=spec.get("signerName", ""),
        requester=Requester(
            username=spec.get("username", ""),
            uid=spec.get("uid", ""),
            groups=tuple(spec.get("groups") or ()),
            extra=extra,
        ),
        request_pem=base64.b64decode(spec.get("request", "")),
        state=state,
    )


def with_condition(
    obj: dict[str, Any], kind: str, reason: str, message: str, at: str
) -> dict[str, Any]:
    """The object to PUT to /approval (Approved, Denied) or /status (Failed)."""
    body = copy.deepcopy(obj)
    conditions = body.setdefault("status", {}).setdefault("conditions", [])
    conditions.append(
        {"type": kind, "status": "True", "reason": reason, "message": message,
         "lastUpdateTime": at, "lastTransitionTime": at}
    )  # fmt: skip
    return body


def with_certificate(obj: dict[str, Any], pem: bytes) -> dict[str, Any]:
    """The object to PUT to /status: the signed certificate."""
    body = copy.deepcopy(obj)
    body.setdefault("status", {})["certificate"] = base64.b64encode(pem).decode()
    return body
