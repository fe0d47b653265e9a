"""Repository sessions: a person's short-lived right to read one repository's logs or
run `docker` against it, on the one machine where it runs.

The flow (docs/design.md#sessions): `kubectl berth logs|exec` makes a key and a
CertificateSigningRequest for signer SIGNER_NAME whose request names the placement and
the verb (a URI SAN, `request_uri`); the API server records who asked. The operator asks
the API server (a SubjectAccessReview) whether that person may `get
repositoryplacements/logs` or `create repositoryplacements/exec` on that placement; if
so it signs a certificate with the sessions CA naming the grant (`grant_uri`: machine,
repository, verb, placement; the person as CN, their groups as O). An agent trusts
certificates of the sessions CA only on its session routes, and only for a grant naming
itself and the route's repository and verb. Nothing here talks to a server.
"""

from __future__ import annotations

import datetime as dt
import re
import urllib.parse
from dataclasses import dataclass
from enum import StrEnum

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

SIGNER_NAME = "berth.dev/repository-session"
# The shortest life the API server allows a CSR's certificate (expirationSeconds).
SESSION_SECONDS = 600
_SCHEME = "berth"
_REQUEST_HOST = "session-request"
_GRANT_HOST = "session"
# A Kubernetes object name (DNS subdomain) or a berth machine / repository name.
_NAME = re.compile(r"[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?")


class SessionError(ValueError):
    """A session request or grant that is malformed or does not fit where it is used."""


class SessionVerb(StrEnum):
    LOGS = "logs"
    EXEC = "exec"

    @property
    def permission(self) -> tuple[str, str]:
        """The RBAC verb and the subresource of repositoryplacements it needs, as
        Kubernetes names them for pods (get pods/log, create pods/exec)."""
        return ("get", "logs") if self is SessionVerb.LOGS else ("create", "exec")


def _name(value: str, what: str) -> str:
    if not _NAME.fullmatch(value):
        raise SessionError(f"{what} {value!r} is not a valid name")
    return value


@dataclass(frozen=True)
class SessionRequest:
    """What a person asks for: a verb on a placement."""

    namespace: str
    placement: str
    verb: SessionVerb

    def uri(self) -> str:
        return f"{_SCHEME}://{_REQUEST_HOST}/{self.namespace}/{self.placement}/{self.verb.value}"

    @classmethod
    def from_uri(cls, uri: str) -> SessionRequest:
        parts = urllib.parse.urlsplit(uri)
        segments = parts.path.strip("/").split("/")
        if parts.scheme != _SCHEME or parts.netloc != _REQUEST_HOST or len(segments) != 3:
            raise SessionError(f"not a berth session request: {uri!r}")
        namespace, placement, verb = segments
        try:
            parsed = SessionVerb(verb)
        except ValueError:
            raise SessionError(f"unknown session verb {verb!r}") from None
        return cls(_name(namespace, "namespace"), _name(placement, "placement"), parsed)


@dataclass(frozen=True)
class SessionGrant:
    """What the operator granted: the verb on one repository on one machine, for whom."""

    machine: str
    repository: str
    verb: SessionVerb
    namespace: str
    placement: str
    user: str
    groups: tuple[str, ...] = ()

    def uri(self) -> str:
        query = urllib.parse.urlencode({"placement": f"{self.namespace}/{self.placement}"})
        path = f"{self.machine}/{self.repository}/{self.verb.value}"
        return f"{_SCHEME}://{_GRANT_HOST}/{path}?{query}"

    def allows(self, machine: str, repository: str, verb: SessionVerb) -> bool:
        return (self.machine, self.repository, self.verb) == (machine, repository, verb)


def grant_of(cert: x509.Certificate) -> SessionGrant:
    """The grant a session certificate carries (its chain already verified)."""
    uris = _uris(cert)
    grants = [u for u in uris if urllib.parse.urlsplit(u).netloc == _GRANT_HOST]
    if len(grants) != 1:
        raise SessionError("the certificate names no single berth session grant")
    parts = urllib.parse.urlsplit(grants[0])
    segments = parts.path.strip("/").split("/")
    placement = urllib.parse.parse_qs(parts.query).get("placement", [""])[0]
    if parts.scheme != _SCHEME or len(segments) != 3 or placement.count("/") != 1:
        raise SessionError(f"malformed berth session grant: {grants[0]!r}")
    machine, repository, verb = segments
    namespace, name = placement.split("/")
    users = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    groups = cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)
    try:
        parsed = SessionVerb(verb)
    except ValueError:
        raise SessionError(f"unknown session verb {verb!r}") from None
    return SessionGrant(
        machine=_name(machine, "machine"),
        repository=_name(repository, "repository"),
        verb=parsed,
        namespace=_name(namespace, "namespace"),
        placement=_name(name, "placement"),
        user=str(users[0].value) if users else "",
        groups=tuple(str(g.value) for g in groups),
    )


def _uris(subject: x509.Certificate | x509.CertificateSigningRequest) -> list[str]:
    try:
        sans = subject.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except x509.ExtensionNotFound:
        return []
    return list(sans.value.get_values_for_type(x509.UniformResourceIdentifier))


def build_request(key: ec.EllipticCurvePrivateKey, request: SessionRequest) -> bytes:
    """The PEM CertificateSigningRequest `kubectl berth` sends for a session."""
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "berth-session")]))
        .add_extension(
            x509.SubjectAlternativeName([x509.UniformResourceIdentifier(request.uri())]),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    return csr.public_bytes(serialization.Encoding.PEM)


def read_request(pem: bytes) -> tuple[x509.CertificateSigningRequest, SessionRequest]:
    """The CSR and the session it asks for; SessionError if it is not one."""
    try:
        csr = x509.load_pem_x509_csr(pem)
    except ValueError as err:
        raise SessionError(f"not a PEM certificate request: {err}") from None
    if not csr.is_signature_valid:
        raise SessionError("the certificate request's signature is not valid")
    if not isinstance(csr.public_key(), ec.EllipticCurvePublicKey):
        raise SessionError("a session key must be an EC key")
    requests = [u for u in _uris(csr) if urllib.parse.urlsplit(u).netloc == _REQUEST_HOST]
    if len(requests) != 1:
        raise SessionError("the certificate request names no single berth session")
    return csr, SessionRequest.from_uri(requests[0])


def sign_grant(
    csr: x509.CertificateSigningRequest,
    grant: SessionGrant,
    ca_cert: x509.Certificate,
    ca_key: ec.EllipticCurvePrivateKey,
    seconds: int,
    now: dt.datetime | None = None,
) -> bytes:
    """The session certificate (PEM) for the CSR's key. Its subject and names are the
    grant's, never the request's: the signer decides what the certificate says."""
    now = now or dt.datetime.now(dt.UTC)
    subject = [x509.NameAttribute(NameOID.COMMON_NAME, grant.user or "unknown")]
    subject += [x509.NameAttribute(NameOID.ORGANIZATION_NAME, g) for g in grant.groups if g]
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name(subject))
        .issuer_name(ca_cert.subject)
        .public_key(csr.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(seconds=30))
        .not_valid_after(now + dt.timedelta(seconds=seconds))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .add_extension(
            x509.SubjectAlternativeName([x509.UniformResourceIdentifier(grant.uri())]),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM)


def issued_by(cert: x509.Certificate, ca_cert: x509.Certificate) -> bool:
    """Whether ca_cert signed cert (a session certificate, not one of the cluster CA's)."""
    try:
        cert.verify_directly_issued_by(ca_cert)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True
