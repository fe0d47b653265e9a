"""A host bundle: what a new Docker host needs to join — its name, where its agent
listens, its certificate and key, the CA it trusts, and (optionally) the sessions CA
whose short-lived certificates open its session routes (kubectl berth logs/exec).

`kubectl berth enroll` writes one (and creates the Machine); `berth-agent install`
reads it on the host. It is a small tar file, so it travels by scp; it holds a private
key, so it is written 0600 and should be deleted once installed.
"""

from __future__ import annotations

import io
import ipaddress
import os
import tarfile
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes

MEMBERS = ("name", "address", "port", "ca.crt", "agent.crt", "agent.key")
OPTIONAL = ("sessions-ca.crt",)  # bundles made before sessions existed lack it
MAX_MEMBER_BYTES = 64 * 1024


class BundleError(ValueError):
    """A bundle that cannot be trusted or used; the message says why."""


@dataclass(frozen=True)
class HostBundle:
    name: str
    address: str
    port: int
    ca_pem: bytes
    cert_pem: bytes
    key_pem: bytes
    sessions_ca_pem: bytes | None = None

    @property
    def endpoint(self) -> str:
        host = f"[{self.address}]" if ":" in self.address else self.address
        return f"https://{host}:{self.port}"

    def validate(self) -> None:
        """The certificate is the CA's, matches the key, and names the address."""
        try:
            ca = x509.load_pem_x509_certificate(self.ca_pem)
            cert = x509.load_pem_x509_certificate(self.cert_pem)
            key = serialization.load_pem_private_key(self.key_pem, password=None)
        except ValueError as err:
            raise BundleError(f"unreadable certificate or key: {err}") from None
        if not isinstance(key, ec.EllipticCurvePrivateKey) or _spki(key.public_key()) != _spki(
            cert.public_key()
        ):
            raise BundleError("agent.key does not belong to agent.crt")
        try:
            cert.verify_directly_issued_by(ca)
        except (ValueError, TypeError, InvalidSignature) as err:
            raise BundleError(f"agent.crt is not signed by ca.crt: {err}") from None
        try:
            sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        except x509.ExtensionNotFound:
            raise BundleError("agent.crt has no subject alternative names") from None
        names = set(sans.get_values_for_type(x509.DNSName))
        names |= {str(ip) for ip in sans.get_values_for_type(x509.IPAddress)}
        if self.sessions_ca_pem is not None:
            try:
                sessions = x509.load_pem_x509_certificate(self.sessions_ca_pem)
            except ValueError as err:
                raise BundleError(f"unreadable sessions-ca.crt: {err}") from None
            if sessions == ca:
                raise BundleError("sessions-ca.crt is ca.crt: sessions need a CA of their own")
        if _normal(self.address) not in names:
            raise BundleError(
                f"agent.crt is not valid for {self.address} (it names {sorted(names)})"
            )

    def write(self, path: Path) -> None:
        """As a tar file readable by its owner only."""
        fields = {
            "name": self.name.encode(),
            "address": self.address.encode(),
            "port": str(self.port).encode(),
            "ca.crt": self.ca_pem,
            "agent.crt": self.cert_pem,
            "agent.key": self.key_pem,
        }
        if self.sessions_ca_pem is not None:
            fields["sessions-ca.crt"] = self.sessions_ca_pem
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as out, tarfile.open(fileobj=out, mode="w") as tar:
            for member, data in fields.items():
                info = tarfile.TarInfo(member)
                info.size, info.mode = len(data), 0o600
                tar.addfile(info, io.BytesIO(data))

    @classmethod
    def read(cls, path: Path) -> HostBundle:
        """Only the known regular files are read; nothing is extracted to disk."""
        data: dict[str, bytes] = {}
        try:
            with tarfile.open(path, mode="r") as tar:
                for info in tar.getmembers():
                    if info.name not in (*MEMBERS, *OPTIONAL) or not info.isfile():
                        raise BundleError(f"unexpected entry {info.name!r} in {path}")
                    if info.size > MAX_MEMBER_BYTES:
                        raise BundleError(f"{info.name} in {path} is too large")
                    extracted = tar.extractfile(info)
                    assert extracted is not None
                    data[info.name] = extracted.read()
        except (tarfile.TarError, OSError) as err:
            raise BundleError(f"cannot read the bundle {path}: {err}") from None
        missing = [m for m in MEMBERS if m not in data]
        if missing:
            raise BundleError(f"{path} lacks {', '.join(missing)}")
        try:
            port = int(data["port"])
        except ValueError:
            raise BundleError(f"bad port {data['port']!r}") from None
        bundle = cls(
            name=data["name"].decode().strip(),
            address=data["address"].decode().strip(),
            port=port,
            ca_pem=data["ca.crt"],
            cert_pem=data["agent.crt"],
            key_pem=data["agent.key"],
            sessions_ca_pem=data.get("sessions-ca.crt"),
        )
        bundle.validate()
        return bundle


def _spki(key: CertificatePublicKeyTypes) -> bytes:
    return key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _normal(address: str) -> str:
    try:
        return str(ipaddress.ip_address(address))
    except ValueError:
        return address
