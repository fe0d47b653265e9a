"""The session signer: answers each CertificateSigningRequest for berth's signer once.

A reconcile reads the CSR from the cache, asks the API server whether its requester may
(SubjectAccessReview), finds where the placement's repository runs, and approves and
signs, or denies with the reason (which `kubectl berth` shows). Approval and certificate
are two writes; a CSR approved by a signer that stopped before signing is signed on the
next pass, after the same checks.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from berth_common.sessions import (
    SESSION_SECONDS,
    SIGNER_NAME,
    SessionError,
    SessionRequest,
    read_request,
    sign_grant,
)
from berth_operator.controller.cache import Obj, ObjectCache
from berth_operator.controller.workers import DONE, Result
from berth_operator.machine.inventory import Inventories
from berth_operator.placement.status_writer import PlacementKey
from berth_operator.sessions.api import SessionsAPI
from berth_operator.sessions.csr import (
    CSRState,
    SessionCSR,
    read_csr,
    with_certificate,
    with_condition,
)
from berth_operator.sessions.decide import Deny, decide_session, whereabouts

log = logging.getLogger("berth.operator.sessions")
ANSWERED = (CSRState.ISSUED, CSRState.DENIED, CSRState.FAILED)


@dataclass(frozen=True)
class SessionsCA:
    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey

    @classmethod
    def load(cls, directory: Path) -> SessionsCA:
        """tls.crt and tls.key, as a kubernetes.io/tls Secret is mounted."""
        cert = x509.load_pem_x509_certificate((directory / "tls.crt").read_bytes())
        key = serialization.load_pem_private_key((directory / "tls.key").read_bytes(), None)
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise ValueError(f"{directory / 'tls.key'}: the sessions CA's key must be EC")
        return cls(cert, key)


def csr_name(obj: Obj) -> str:
    return str(obj["metadata"]["name"])


def is_session_request(obj: Obj) -> bool:
    return bool((obj.get("spec") or {}).get("signerName") == SIGNER_NAME)


class SessionSigner:
    def __init__(
        self,
        api: SessionsAPI,
        csrs: ObjectCache[str],
        placements: ObjectCache[PlacementKey],
        inventories: Inventories,
        ca: SessionsCA | None,
    ) -> None:
        self.api, self.csrs, self.placements = api, csrs, placements
        self.inventories, self.ca = inventories, ca

    def reconcile(self, name: str) -> Result:
        obj = self.csrs.get(name)
        if obj is None:
            return DONE
        csr = read_csr(obj)
        if csr.signer != SIGNER_NAME or csr.state in ANSWERED:
            return DONE
        try:
            x509_request, request = read_request(csr.request_pem)
        except SessionError as err:
            self._deny(obj, csr, None, Deny("InvalidRequest", str(err)))
            return DONE
        if self.ca is None:
            message = "this berth operator has no sessions CA (the chart's sessionsCA values)"
            self._deny(obj, csr, request, Deny("SessionsDisabled", message))
            return DONE
        placement = self.placements.get((request.namespace, request.placement))
        repository = placement["spec"]["repository"] if placement else ""
        decision = decide_session(
            request,
            csr.requester,
            self.api.review(csr.requester, request),
            whereabouts(placement, self.inventories.holders(repository) if repository else {}),
        )
        if isinstance(decision, Deny):
            self._deny(obj, csr, request, decision)
            return DONE
        grant = decision.grant
        if csr.state is CSRState.PENDING:
            message = f"{grant.verb.value} on {grant.repository} at {grant.machine}"
            obj = self.api.answer(with_condition(obj, "Approved", "BerthSession", message, _now()))
            self.csrs.store(obj)
        pem = sign_grant(x509_request, grant, self.ca.cert, self.ca.key, SESSION_SECONDS)
        self.csrs.store(self.api.issue(with_certificate(obj, pem)))
        log.info(
            "session granted",
            extra={"csr": name, "user": grant.user,
                   "placement": f"{grant.namespace}/{grant.placement}", "verb": grant.verb.value,
                   "repository": grant.repository, "machine": grant.machine},
        )  # fmt: skip
        return DONE

    def _deny(self, obj: Obj, csr: SessionCSR, request: SessionRequest | None, deny: Deny) -> None:
        if csr.state is CSRState.APPROVED:
            # Approved by someone else (`kubectl certificate approve`), which does not
            # replace the review: Denied cannot follow Approved, so it fails instead.
            failed = with_condition(obj, "Failed", deny.reason, deny.message, _now())
            self.csrs.store(self.api.issue(failed))
        else:
            denied = with_condition(obj, "Denied", deny.reason, deny.message, _now())
            self.csrs.store(self.api.answer(denied))
        placement = f"{request.namespace}/{request.placement}" if request else None
        log.info(
            "session denied",
            extra={"csr": csr.name, "user": csr.requester.username, "placement": placement,
                   "verb": request.verb.value if request else None, "reason": deny.reason,
                   "message": deny.message},
        )  # fmt: skip


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
