"""Where the lab finds the Kubernetes programs that `hack/kube/build.sh` builds.

kube-apiserver, kubectl, helm, external-dns and Flux's two controllers come from one
cache (`/var/cache/berth/kube/bin`, or `$BERTH_KUBE_BIN`; the CRDs of external-dns, Flux
and the Prometheus Operator beside it, in `../crds`); kubectl is built from the same
Kubernetes modules and version as the API server, so the lab never depends on whichever
kubectl a machine happens to carry.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

DEFAULT_BIN_DIR = Path("/var/cache/berth/kube/bin")
BUILD_HINT = (
    "run `bash hack/kube/build.sh` (builds kube-apiserver, kubectl, helm and external-dns, "
    "cached, a few minutes cold)"
)


class KubeError(RuntimeError):
    """The API server could not be started (or a Kubernetes program is missing)."""


def bin_dir() -> Path:
    return Path(os.environ.get("BERTH_KUBE_BIN") or DEFAULT_BIN_DIR)


def _built_else_on_path(name: str) -> Path:
    built = bin_dir() / name
    if os.access(built, os.X_OK):
        return built
    found = shutil.which(name)
    if not found:
        raise KubeError(f"{built} not found: {BUILD_HINT}")
    return Path(found)


def helm_binary() -> Path:
    """The helm built by hack/kube/build.sh, else one on PATH."""
    return _built_else_on_path("helm")


def kubectl_binary() -> Path:
    """`$BERTH_KUBECTL`, else the kubectl built by hack/kube/build.sh, else one on PATH."""
    chosen = os.environ.get("BERTH_KUBECTL")
    return Path(chosen) if chosen else _built_else_on_path("kubectl")


def external_dns_binary() -> Path:
    """The external-dns built by hack/kube/build.sh, else one on PATH."""
    return _built_else_on_path("external-dns")


def external_dns_crd() -> Path:
    """external-dns's own DNSEndpoint CRD, as hack/kube/build.sh copied it from its module."""
    crd = bin_dir().parent / "crds" / "dnsendpoints.externaldns.k8s.io.yaml"
    if not crd.exists():
        raise KubeError(f"{crd} not found: {BUILD_HINT}")
    return crd


FLUX_HINT = "run `bash hack/kube/build.sh --with-flux` (about 15 minutes cold)"


def flux_binary(name: str) -> Path:
    """Flux's source-controller or kustomize-controller, as `hack/kube/build.sh
    --with-flux` built it."""
    built = bin_dir() / name
    if not os.access(built, os.X_OK):
        raise KubeError(f"{built} not found: {FLUX_HINT}")
    return built


def crds(kind: str) -> list[Path]:
    """The CRDs hack/kube/build.sh copied from a project's module: "flux" or "monitoring"."""
    found = sorted((bin_dir().parent / "crds" / kind).glob("*.yaml"))
    if not found:
        raise KubeError(f"no {kind} CRDs in {bin_dir().parent / 'crds' / kind}: {BUILD_HINT}")
    return found
