"""Certificates and keys for a self-contained kube-apiserver (tests and the lab).

A real cluster brings its own PKI; these are the pieces `kube-apiserver` needs when the
project runs one itself: a CA that signs the serving certificate and the admin's client
certificate, and the key pair that signs and verifies service-account tokens.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from berth_common.pki import CertFiles, create_ca, issue, write_key

# Every name the in-cluster `kubernetes` Service is reached by, so the serving
# certificate stays valid if something in the cluster ever talks to it by those names.
APISERVER_DNS = (
    "localhost",
    "kubernetes",
    "kubernetes.default",
    "kubernetes.default.svc",
    "kubernetes.default.svc.cluster.local",
)
# The group RBAC grants everything to, without any binding (bootstrap policy).
MASTERS_GROUP = "system:masters"


@dataclass(frozen=True)
class KeyPair:
    private: Path
    public: Path


@dataclass(frozen=True)
class KubePKI:
    ca: CertFiles
    apiserver: CertFiles
    admin: CertFiles
    service_accounts: KeyPair


def create_service_account_keys(pair: KeyPair) -> KeyPair:
    """An EC P-256 key pair: the apiserver signs tokens with ES256 and checks them with it."""
    key = ec.generate_private_key(ec.SECP256R1())
    write_key(pair.private, key)
    pair.public.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return pair


def create_kube_pki(directory: Path, *, ips: tuple[str, ...] = ("127.0.0.1",)) -> KubePKI:
    """A fresh CA, serving cert, admin client cert (system:masters) and SA keys in directory."""
    directory.mkdir(parents=True, exist_ok=True)

    def files(stem: str) -> CertFiles:
        return CertFiles(directory / f"{stem}.crt", directory / f"{stem}.key")

    ca = create_ca(files("ca"), cn="berth kube CA")
    return KubePKI(
        ca=ca,
        apiserver=issue(ca, files("apiserver"), "kube-apiserver", dns=APISERVER_DNS, ips=ips),
        # The apiserver maps CN to the user name and O to groups.
        admin=issue(ca, files("admin"), "berth-admin", org=MASTERS_GROUP),
        service_accounts=create_service_account_keys(
            KeyPair(directory / "sa.key", directory / "sa.pub")
        ),
    )
