"""Session certificates for tests, made as the operator's signer makes them: a CSR from
`kubectl berth` (build_request), signed by the sessions CA with a grant (sign_grant)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from berth_common.pki import CertFiles, write_pair
from berth_common.sessions import (
    SessionGrant,
    SessionRequest,
    SessionVerb,
    build_request,
    read_request,
    sign_grant,
)


def grant(
    verb: SessionVerb = SessionVerb.LOGS,
    repository: str = "pulse",
    machine: str = "host-a",
    user: str = "alice@example.com",
    groups: tuple[str, ...] = ("devs", "system:authenticated"),
) -> SessionGrant:
    return SessionGrant(
        machine=machine,
        repository=repository,
        verb=verb,
        namespace="team",
        placement=repository,
        user=user,
        groups=groups,
    )


def session_certificate(
    ca: CertFiles,
    out: CertFiles,
    granted: SessionGrant,
    seconds: int = 600,
    now: dt.datetime | None = None,
) -> CertFiles:
    """out: where the certificate and its key are written (the key 0600)."""
    key = ec.generate_private_key(ec.SECP256R1())
    request = SessionRequest(granted.namespace, granted.placement, granted.verb)
    csr, _ = read_request(build_request(key, request))
    ca_key = serialization.load_pem_private_key(ca.key.read_bytes(), password=None)
    assert isinstance(ca_key, ec.EllipticCurvePrivateKey)
    ca_cert = x509.load_pem_x509_certificate(ca.cert.read_bytes())
    pem = sign_grant(csr, granted, ca_cert, ca_key, seconds, now)
    return write_pair(out, pem, key)


def files(directory: Path, name: str) -> CertFiles:
    return CertFiles(directory / f"{name}.crt", directory / f"{name}.key")
