"""Short-lived transfer tokens: claims signed with a certificate from the cluster's CA.

The token carries its signer's certificate; a verifier checks that the certificate was
issued by its CA, that the signer may issue tokens (the operator, or the source agent
itself for a local push), the signature, the expiry, and the claims it was told to expect.
"""

from __future__ import annotations

import base64
import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from berth_common.pki import CertFiles

OPERATOR_CN = "berth-operator"


class TokenError(ValueError):
    """The token is malformed, forged, expired or for another transfer."""


@dataclass(frozen=True)
class TransferClaims:
    transfer_id: str  # the one transfer the token allows
    repository: str  # GUID
    source: str  # machine names
    target: str
    expires_at: float


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def sign(claims: TransferClaims, signer: CertFiles) -> str:
    key = serialization.load_pem_private_key(signer.key.read_bytes(), password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise TokenError("signing key must be an EC key")
    body = json.dumps(asdict(claims), sort_keys=True).encode()
    cert = signer.cert.read_bytes()
    signed = _b64(cert) + "." + _b64(body)
    signature = key.sign(signed.encode(), ec.ECDSA(hashes.SHA256()))
    return signed + "." + _b64(signature)


def issue(
    transfer_id: str,
    repository: str,
    source: str,
    target: str,
    signer: CertFiles,
    ttl: float = 900,
) -> str:
    return sign(TransferClaims(transfer_id, repository, source, target, time.time() + ttl), signer)


def _renamed(body: dict[str, Any]) -> dict[str, Any]:
    # Tokens from before the claim was renamed (they live 15 minutes): an operator and its
    # agents upgraded one after the other must not refuse each other's transfers.
    if "migration_id" in body and "transfer_id" not in body:
        body["transfer_id"] = body.pop("migration_id")
    return body


def _common_name(cert: x509.Certificate) -> str:
    names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(names[0].value) if names else ""


def verify(
    token: str,
    ca_cert: Path,
    *,
    target: str,
    repository: str | None = None,
    transfer_id: str | None = None,
    now: float | None = None,
) -> TransferClaims:
    try:
        cert_part, body_part, sig_part = token.split(".")
        cert = x509.load_pem_x509_certificate(_unb64(cert_part))
        claims = TransferClaims(**_renamed(json.loads(_unb64(body_part))))
        signature = _unb64(sig_part)
    except (ValueError, TypeError) as err:
        raise TokenError(f"malformed transfer token: {err}") from None
    ca = x509.load_pem_x509_certificate(ca_cert.read_bytes())
    ca_key = ca.public_key()
    signer_key = cert.public_key()
    if not isinstance(ca_key, ec.EllipticCurvePublicKey) or not isinstance(
        signer_key, ec.EllipticCurvePublicKey
    ):
        raise TokenError("transfer token: only EC certificates are accepted")
    try:
        if cert.issuer != ca.subject or cert.signature_hash_algorithm is None:
            raise InvalidSignature
        ca_key.verify(
            cert.signature, cert.tbs_certificate_bytes, ec.ECDSA(cert.signature_hash_algorithm)
        )
        signer_key.verify(signature, f"{cert_part}.{body_part}".encode(), ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        raise TokenError("transfer token: signature or signer certificate is not trusted") from None
    now = time.time() if now is None else now
    if not cert.not_valid_before_utc.timestamp() <= now <= cert.not_valid_after_utc.timestamp():
        raise TokenError("transfer token: signer certificate is not valid now")
    signer = _common_name(cert)
    if signer not in (OPERATOR_CN, claims.source):
        raise TokenError(
            f"transfer token: {signer!r} may not authorise transfers from {claims.source!r}"
        )
    if claims.expires_at < now:
        raise TokenError("transfer token has expired")
    expected = {"target": target, "repository": repository, "transfer_id": transfer_id}
    for field, want in expected.items():
        if want is not None and getattr(claims, field) != want:
            raise TokenError(
                f"transfer token is for {field} {getattr(claims, field)!r}, not {want!r}"
            )
    return claims
