"""The Kubernetes calls the session signer makes: a SubjectAccessReview, and the
answer to a CertificateSigningRequest (approval, denial, certificate). Plain JSON both
ways, as the operator's other calls."""

from __future__ import annotations

import json
from typing import Any, cast

from kubernetes import client

from berth_api.v1alpha1 import GROUP
from berth_common.sessions import SessionRequest
from berth_operator.kube import PLACEMENTS
from berth_operator.sessions.decide import Requester, Review


def _json(answer: Any) -> dict[str, Any]:
    """An urllib3 response read whole (the client's models are not built)."""
    try:
        return dict(json.loads(answer.data))
    finally:
        answer.release_conn()


class SessionsAPI:
    def __init__(self, api_client: client.ApiClient) -> None:
        self.authorization = client.AuthorizationV1Api(api_client)
        self.certificates = client.CertificatesV1Api(api_client)

    def review(self, requester: Requester, request: SessionRequest) -> Review:
        """May the requester do the request's verb on its placement? The API server's
        authorizers answer (RBAC, webhooks), with the person's own groups and extras."""
        verb, subresource = request.verb.permission
        body: Any = {  # plain JSON, as the client's models are typed to want
            "apiVersion": "authorization.k8s.io/v1",
            "kind": "SubjectAccessReview",
            "spec": {
                "user": requester.username,
                "uid": requester.uid or None,
                "groups": list(requester.groups),
                "extra": {k: list(v) for k, v in requester.extra},
                "resourceAttributes": {
                    "group": GROUP,
                    "resource": PLACEMENTS,
                    "subresource": subresource,
                    "verb": verb,
                    "namespace": request.namespace,
                    "name": request.placement,
                },
            },
        }
        answer = _json(
            self.authorization.create_subject_access_review(body, _preload_content=False)
        )
        status = answer.get("status") or {}
        return Review(
            allowed=bool(status.get("allowed")) and not status.get("denied"),
            reason=str(status.get("reason") or status.get("evaluationError") or ""),
        )

    def answer(self, body: dict[str, Any]) -> dict[str, Any]:
        """PUT /approval: an Approved or Denied condition."""
        name = body["metadata"]["name"]
        return _json(
            self.certificates.replace_certificate_signing_request_approval(
                name, cast(Any, body), _preload_content=False
            )
        )

    def issue(self, body: dict[str, Any]) -> dict[str, Any]:
        """PUT /status: the certificate (or a Failed condition)."""
        name = body["metadata"]["name"]
        return _json(
            self.certificates.replace_certificate_signing_request_status(
                name, cast(Any, body), _preload_content=False
            )
        )
