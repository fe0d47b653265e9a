"""The few Kubernetes calls the operator makes, over the official client."""

from __future__ import annotations

import base64
import datetime as dt
import logging
from typing import Any, cast

from kubernetes import client

from berth_api.v1alpha1 import GROUP, VERSION
from berth_operator.placement.endpoints import DNS_API_VERSION

log = logging.getLogger("berth.operator.kube")
PLACEMENTS, MACHINES = "repositoryplacements", "machines"
DNS_ENDPOINTS = "dnsendpoints"  # externaldns.k8s.io


class ObjectChanged(Exception):
    """A write that was to hold only if nothing had changed the object: something had."""


class Kube:
    def __init__(self, api_client: client.ApiClient | None = None) -> None:
        self.api_client = api_client or client.ApiClient()
        self.custom = client.CustomObjectsApi(self.api_client)
        self.core = client.CoreV1Api(self.api_client)

    def machines(self) -> list[dict[str, Any]]:
        listed = cast(
            dict[str, Any], self.custom.list_cluster_custom_object(GROUP, VERSION, MACHINES)
        )
        return cast(list[dict[str, Any]], listed["items"])

    def patch_placement_status(
        self,
        namespace: str,
        name: str,
        status: dict[str, Any],
        resource_version: str | None = None,
    ) -> dict[str, Any] | None:
        """Merge-patch status (null removes a field); the object as written, or None if
        the placement is gone. With resource_version, written only if the placement is
        still at that version (else ObjectChanged)."""
        body: dict[str, Any] = {"status": status}
        if resource_version is not None:
            body["metadata"] = {"resourceVersion": resource_version}
        try:
            return cast(
                dict[str, Any],
                self.custom.patch_namespaced_custom_object_status(
                    GROUP, VERSION, namespace, PLACEMENTS, name, body
                ),
            )
        except client.ApiException as err:
            if err.status == 404:
                return None
            if err.status == 409 and resource_version is not None:
                raise ObjectChanged(
                    f"{namespace}/{name} changed since {resource_version}"
                ) from None
            raise

    def secret_data(self, namespace: str, name: str) -> dict[str, bytes] | None:
        """A Secret's entries, decoded; None if there is no such Secret."""
        try:
            secret = self.core.read_namespaced_secret(name, namespace)
        except client.ApiException as err:
            if err.status == 404:
                return None
            raise
        return {k: base64.b64decode(v) for k, v in (secret.data or {}).items()}

    def placement(self, namespace: str, name: str) -> dict[str, Any] | None:
        """The placement as the API server holds it now; None if it is gone."""
        try:
            return cast(
                dict[str, Any],
                self.custom.get_namespaced_custom_object(
                    GROUP, VERSION, namespace, PLACEMENTS, name
                ),
            )
        except client.ApiException as err:
            if err.status == 404:
                return None
            raise

    def patch_machine_status(self, name: str, status: dict[str, Any]) -> dict[str, Any] | None:
        """The Machine as written, or None if it is gone."""
        try:
            return cast(
                dict[str, Any],
                self.custom.patch_cluster_custom_object_status(
                    GROUP, VERSION, MACHINES, name, {"status": status}
                ),
            )
        except client.ApiException as err:
            if err.status == 404:
                return None
            raise

    def apply_dns_endpoint(self, body: dict[str, Any]) -> None:
        """Create the external-dns DNSEndpoint, or replace its records and owner."""
        group, version = body["apiVersion"].split("/")
        meta = body["metadata"]
        try:
            self.custom.create_namespaced_custom_object(
                group, version, meta["namespace"], DNS_ENDPOINTS, body
            )
        except client.ApiException as err:
            if err.status != 409:
                raise
            self.custom.patch_namespaced_custom_object(
                group, version, meta["namespace"], DNS_ENDPOINTS, meta["name"],
                {"metadata": {"labels": meta["labels"], "ownerReferences": meta["ownerReferences"]},
                 "spec": body["spec"]},
            )  # fmt: skip

    def delete_dns_endpoint(self, namespace: str, name: str, owner_uid: str) -> bool:
        """Delete the DNSEndpoint named like a placement if that placement owns it (one of
        the same name that someone else wrote is left alone); True if one was deleted.
        Garbage collection would do it for a deleted placement, where a cluster runs it."""
        group, version = DNS_API_VERSION.split("/")
        try:
            found = self.custom.get_namespaced_custom_object(
                group, version, namespace, DNS_ENDPOINTS, name
            )
        except client.ApiException as err:
            if err.status == 404:
                return False
            raise
        meta = cast(dict[str, Any], found)["metadata"]
        if not any(o.get("uid") == owner_uid for o in meta.get("ownerReferences") or []):
            return False
        try:
            self.custom.delete_namespaced_custom_object(
                group, version, namespace, DNS_ENDPOINTS, name,
                body=client.V1DeleteOptions(preconditions=client.V1Preconditions(uid=meta["uid"])),
            )  # fmt: skip
        except client.ApiException as err:
            if err.status not in (404, 409):  # gone, or replaced meanwhile: not ours to delete
                raise
            return False
        return True

    def event(self, obj: dict[str, Any], reason: str, message: str, type_: str = "Normal") -> None:
        meta = obj["metadata"]
        namespace = meta.get("namespace") or "default"
        now = dt.datetime.now(dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
        # Plain JSON both ways: the client's models cost more CPU than the call, and the
        # answer is not read (10 % of the operator's CPU while 50 moves ran).
        body: Any = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"generateName": f"{meta['name']}.", "namespace": namespace},
            "involvedObject": {
                "apiVersion": obj["apiVersion"],
                "kind": obj["kind"],
                "name": meta["name"],
                "namespace": meta.get("namespace"),
                "uid": meta.get("uid"),
            },
            "reason": reason,
            "message": message[:1024],
            "type": type_,
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
            "source": {"component": "berth-operator"},
        }
        try:
            answer: Any = self.core.create_namespaced_event(
                namespace, body, _preload_content=False
            )  # urllib3's response, unread
            answer.drain_conn()
            answer.release_conn()
        except client.ApiException as err:  # events are best effort
            log.warning("event not recorded", extra={"reason": reason, "error": err.reason})
