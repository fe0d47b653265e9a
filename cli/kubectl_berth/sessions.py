"""A session with one repository's Docker daemon (kubectl berth logs/exec).

The CLI makes a key, asks the cluster for a certificate through a
CertificateSigningRequest (signer berth.dev/repository-session), and the berth operator
answers: signed for the machine the repository runs on if RBAC lets this person `get
repositoryplacements/logs` (or `create repositoryplacements/exec`), denied with the
reason otherwise. The key never leaves this process's temporary directory.
"""

from __future__ import annotations

import base64
import contextlib
import json
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from kubernetes import client

from berth_common.agent_api.session_client import SessionClient
from berth_common.pki import CertFiles, write_pair
from berth_common.sessions import (
    SESSION_SECONDS,
    SIGNER_NAME,
    SessionGrant,
    SessionRequest,
    SessionVerb,
    build_request,
    grant_of,
)
from kubectl_berth.client import Berth, CLIError

ANSWER_TIMEOUT = 30.0  # seconds for the operator to sign or deny
POLL = 0.2


class SessionDenied(CLIError):
    """The operator denied the session: reason (Forbidden, NotRunning, ...) and message."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class Session:
    grant: SessionGrant
    client: SessionClient


def _csr(request: SessionRequest, pem: bytes) -> dict[str, Any]:
    return {
        "apiVersion": "certificates.k8s.io/v1",
        "kind": "CertificateSigningRequest",
        "metadata": {
            "generateName": f"berth-{request.verb.value}-{request.placement}-"[:50],
            "labels": {"berth.dev/session": request.verb.value},
        },
        "spec": {
            "request": base64.b64encode(pem).decode(),
            "signerName": SIGNER_NAME,
            "expirationSeconds": SESSION_SECONDS,
            "usages": ["digital signature", "client auth"],
        },
    }


def _answer(csr: dict[str, Any]) -> bytes | None:
    """The certificate once signed; None while pending; SessionDenied if refused."""
    status = csr.get("status") or {}
    if status.get("certificate"):
        return base64.b64decode(status["certificate"])
    for condition in status.get("conditions") or []:
        if condition.get("type") in ("Denied", "Failed") and condition.get("status") != "False":
            raise SessionDenied(condition.get("reason", ""), condition.get("message", "denied"))
    return None


def request_certificate(request: SessionRequest, key: ec.EllipticCurvePrivateKey) -> bytes:
    """Ask the cluster for a session certificate for key; wait for the operator."""
    api = client.CertificatesV1Api()
    try:
        created = api.create_certificate_signing_request(
            cast(Any, _csr(request, build_request(key, request))), _preload_content=False
        )
    except client.ApiException as err:
        if err.status == 403:
            raise CLIError(
                "you may not ask for berth sessions: creating certificatesigningrequests is "
                "forbidden (an administrator binds the chart's ClusterRole "
                "berth-session-requester)"
            ) from None
        raise CLIError(
            f"the API server refused the session request: {err.status} {err.reason}"
        ) from None
    name = _loaded(created)["metadata"]["name"]
    deadline = time.monotonic() + ANSWER_TIMEOUT
    while time.monotonic() < deadline:
        answer = _answer(
            _loaded(api.read_certificate_signing_request(name, _preload_content=False))
        )
        if answer is not None:
            return answer
        time.sleep(POLL)
    raise CLIError(
        f"no answer to session request {name} after {ANSWER_TIMEOUT:.0f}s: is the berth "
        "operator running?"
    )


def _loaded(answer: Any) -> dict[str, Any]:
    try:
        return cast(dict[str, Any], json.loads(answer.data))
    finally:
        answer.release_conn()


@contextlib.contextmanager
def open_session(
    berth: Berth, namespace: str, placement: str, verb: SessionVerb, timeout: float = 60
) -> Iterator[Session]:
    """A client for the agent where the placement's repository runs, authorized for verb
    on that repository only, for SESSION_SECONDS."""
    request = SessionRequest(namespace, placement, verb)
    key = ec.generate_private_key(ec.SECP256R1())
    pem = request_certificate(request, key)
    grant = grant_of(x509.load_pem_x509_certificate(pem))
    machine = berth.machine(grant.machine)
    endpoint, ca = machine["spec"].get("endpoint"), machine["spec"].get("caBundle")
    if not endpoint or not ca:
        raise CLIError(f"machine {grant.machine!r} has no endpoint or caBundle in its spec")
    with tempfile.TemporaryDirectory(prefix="berth-session-") as tmp:
        files = write_pair(CertFiles(Path(tmp, "session.crt"), Path(tmp, "session.key")), pem, key)
        yield Session(grant, SessionClient(endpoint, ca, files.cert, files.key, timeout=timeout))
