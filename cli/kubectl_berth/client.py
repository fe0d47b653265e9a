"""The Kubernetes calls the CLI makes (kubeconfig from KUBECONFIG or --kubeconfig)."""

from __future__ import annotations

from typing import Any, cast

from kubernetes import client, config

GROUP, VERSION = "berth.dev", "v1alpha1"


class CLIError(RuntimeError):
    """Bad input or a refused request: printed, exit code 1, nothing changed."""


class PlacementChanged(CLIError):
    """A write that carried a resourceVersion found the placement changed since."""


class Berth:
    def __init__(self, kubeconfig: str | None, context: str | None) -> None:
        try:
            config.load_kube_config(config_file=kubeconfig, context=context)  # type: ignore[no-untyped-call]
        except config.ConfigException as err:
            raise CLIError(f"no usable kubeconfig: {err}") from None
        contexts, active = config.list_kube_config_contexts(config_file=kubeconfig)  # type: ignore[no-untyped-call]
        chosen = next((c for c in contexts if c["name"] == context), active) if context else active
        self.default_namespace: str = (chosen or {}).get("context", {}).get("namespace", "default")
        self.api = client.CustomObjectsApi()

    def _call(self, fn: Any, *args: Any) -> dict[str, Any]:
        try:
            return cast(dict[str, Any], fn(*args))
        except client.ApiException as err:
            if err.status == 404:
                raise CLIError("not found: " + "/".join(str(a) for a in args[-2:])) from None
            raise CLIError(f"the API server refused: {err.status} {err.reason}") from None

    def placement(self, namespace: str, name: str) -> dict[str, Any]:
        try:
            return self._call(
                self.api.get_namespaced_custom_object,
                GROUP,
                VERSION,
                namespace,
                "repositoryplacements",
                name,
            )
        except CLIError:
            raise CLIError(f"placement {name!r} not found in namespace {namespace!r}") from None

    def placements(self, namespace: str | None) -> list[dict[str, Any]]:
        if namespace is None:
            listed = self._call(
                self.api.list_cluster_custom_object, GROUP, VERSION, "repositoryplacements"
            )
        else:
            listed = self._call(
                self.api.list_namespaced_custom_object,
                GROUP,
                VERSION,
                namespace,
                "repositoryplacements",
            )
        return cast(list[dict[str, Any]], listed["items"])

    def machine(self, name: str) -> dict[str, Any]:
        try:
            return self._call(self.api.get_cluster_custom_object, GROUP, VERSION, "machines", name)
        except CLIError:
            raise CLIError(f"machine {name!r} does not exist") from None

    def machines(self) -> list[dict[str, Any]]:
        listed = self._call(self.api.list_cluster_custom_object, GROUP, VERSION, "machines")
        return cast(list[dict[str, Any]], listed["items"])

    def patch_placement(
        self,
        namespace: str,
        name: str,
        spec: dict[str, Any],
        resource_version: str | None = None,
    ) -> dict[str, Any]:
        """resource_version: written only if the placement is still at that version."""
        body: dict[str, Any] = {"spec": spec}
        if resource_version is not None:
            body["metadata"] = {"resourceVersion": resource_version}
        try:
            return cast(
                dict[str, Any],
                self.api.patch_namespaced_custom_object(
                    GROUP, VERSION, namespace, "repositoryplacements", name, body
                ),
            )
        except client.ApiException as err:
            if err.status == 409:
                raise PlacementChanged(
                    f"placement {name!r} changed since it was read (someone else edited or "
                    "moved it): nothing was changed; look again and retry"
                ) from None
            if err.status == 404:
                raise CLIError(f"placement {name!r} not found in namespace {namespace!r}") from None
            raise CLIError(f"the API server refused: {err.status} {err.reason}") from None

    def patch_machine(self, name: str, spec: dict[str, Any]) -> dict[str, Any]:
        return self._call(
            self.api.patch_cluster_custom_object, GROUP, VERSION, "machines", name, {"spec": spec}
        )

    def create_or_update_machine(self, machine: dict[str, Any]) -> tuple[dict[str, Any], bool]:
        """Create the Machine; if it exists, update its spec (re-enrolling renews its
        certificate). Returns the object and whether it was created."""
        try:
            created = self.api.create_cluster_custom_object(GROUP, VERSION, "machines", machine)
            return cast(dict[str, Any], created), True
        except client.ApiException as err:
            if err.status != 409:
                raise CLIError(f"the API server refused: {err.status} {err.reason}") from None
        name = machine["metadata"]["name"]
        return self.patch_machine(name, machine["spec"]), False
