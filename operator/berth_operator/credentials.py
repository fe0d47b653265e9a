"""A repository's LUKS key, from the Secret its placement names (an adapter).

`spec.credentialsSecretRef` names a Secret in the placement's namespace whose `key`
entry is the key (`kubectl create secret generic web-luks --from-file=key=web.key`).
It is read when an agent needs it (create, start, the target's start in a move), handed
to that agent in the request's body and kept nowhere: not in status, logs or events.
"""

from __future__ import annotations

from berth_api.v1alpha1 import RepositoryPlacementSpec
from berth_operator.kube import Kube
from berth_operator.migration.driver import MigrationError

SECRET_KEY = "key"


class CredentialsMissing(MigrationError):
    """The Secret, or its `key` entry, is not there (yet)."""


class RepositoryKeys:
    def __init__(self, kube: Kube) -> None:
        self.kube = kube

    def key_for(self, namespace: str, spec: RepositoryPlacementSpec) -> bytes | None:
        """The repository's key; None if it is not encrypted (no credentialsSecretRef)."""
        ref = spec.credentials_secret_ref
        if ref is None:
            return None
        data = self.kube.secret_data(namespace, ref.name)
        if data is None:
            raise CredentialsMissing(
                f"Secret {namespace}/{ref.name} (spec.credentialsSecretRef) not found"
            )
        key = data.get(SECRET_KEY)
        if not key:
            raise CredentialsMissing(
                f"Secret {namespace}/{ref.name} has no {SECRET_KEY!r} entry (the LUKS key)"
            )
        return key
