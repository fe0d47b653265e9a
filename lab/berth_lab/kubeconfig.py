"""Kubeconfigs and the two ways the tests talk to a cluster: kubectl, and plain REST.

Everything here works on any cluster reachable through an admin kubeconfig — the
embedded API server of `berth_lab.kube` or an existing one — so the same tests run
against both.
"""

from __future__ import annotations

import base64
import json
import os
import ssl
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import yaml

from berth_lab.kube_tools import kubectl_binary


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def write_kubeconfig(
    path: Path,
    *,
    server: str,
    ca_pem: bytes,
    user: str,
    credentials: dict[str, str],
    namespace: str | None = None,
) -> Path:
    """A single-context kubeconfig with everything embedded, so it can be copied anywhere."""
    context: dict[str, str] = {"cluster": "berth", "user": user}
    if namespace:
        context["namespace"] = namespace
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "berth",
                "cluster": {"server": server, "certificate-authority-data": _b64(ca_pem)},
            }
        ],
        "users": [{"name": user, "user": credentials}],
        "contexts": [{"name": user, "context": context}],
        "current-context": user,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    # Kubeconfigs hold credentials.
    path.touch(mode=0o600)
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def client_cert_credentials(cert_pem: bytes, key_pem: bytes) -> dict[str, str]:
    return {"client-certificate-data": _b64(cert_pem), "client-key-data": _b64(key_pem)}


@dataclass(frozen=True)
class Kubectl:
    """Runs the real kubectl against one kubeconfig, as a user at a terminal would."""

    kubeconfig: Path
    # kubectl caches discovery per server under ~/.kube/cache; a private dir keeps
    # throwaway servers on random ports from piling up there.
    cache_dir: Path | None = None

    def env(self) -> dict[str, str]:
        env = dict(os.environ, KUBECONFIG=str(self.kubeconfig))
        if self.cache_dir is not None:
            env["KUBECACHEDIR"] = str(self.cache_dir)
        return env

    def argv(self, *args: str) -> list[str]:
        return [str(kubectl_binary()), *args]

    def __call__(
        self,
        *args: str,
        input: str | None = None,
        check: bool = True,
        timeout: float = 60,
        env: dict[str, str] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            self.argv(*args),
            input=input,
            capture_output=True,
            text=True,
            timeout=timeout,
            env={**self.env(), **(env or {})},
        )
        if check and proc.returncode != 0:
            raise KubectlError(args, proc.returncode, proc.stderr)
        return proc

    def json(self, *args: str) -> Any:
        return json.loads(self(*args, "-o", "json").stdout)

    def apply(self, manifest: str | dict[str, Any] | list[dict[str, Any]], *flags: str) -> str:
        """kubectl apply -f - of YAML text or objects; returns kubectl's output."""
        if not isinstance(manifest, str):
            docs = manifest if isinstance(manifest, list) else [manifest]
            manifest = yaml.safe_dump_all(docs, sort_keys=False)
        return self("apply", *flags, "-f", "-", input=manifest).stdout

    def popen(self, *args: str) -> subprocess.Popen[str]:
        """A long-running kubectl (get -w, wait); the caller stops it by its pid."""
        return subprocess.Popen(
            self.argv(*args),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=self.env(),
        )


class KubectlError(RuntimeError):
    def __init__(self, args: tuple[str, ...], returncode: int, stderr: str) -> None:
        self.returncode = returncode
        self.stderr = stderr.strip()
        super().__init__(f"kubectl {' '.join(args)} exited {returncode}: {self.stderr}")


def service_account_kubeconfig(
    admin: Kubectl,
    namespace: str,
    name: str,
    path: Path,
    *,
    duration: str = "2h",
) -> Path:
    """Create the ServiceAccount (if missing) and a kubeconfig with a TokenRequest token.

    Uses only kubectl with the admin kubeconfig, so it works for an existing cluster whose
    admin credentials are an exec plugin as well as for the embedded server.
    """
    for kind, args in (("namespace", (namespace,)), ("serviceaccount", (name, "-n", namespace))):
        if admin("get", kind, *args, check=False).returncode != 0:
            admin("create", kind, *args)
    token = admin("create", "token", name, "-n", namespace, f"--duration={duration}").stdout
    view = admin.json("config", "view", "--raw", "--minify")
    cluster = view["clusters"][0]["cluster"]
    if "certificate-authority-data" in cluster:
        ca_pem = base64.b64decode(cluster["certificate-authority-data"])
    else:
        ca_pem = Path(cluster["certificate-authority"]).read_bytes()
    return write_kubeconfig(
        path,
        server=cluster["server"],
        ca_pem=ca_pem,
        user=f"system:serviceaccount:{namespace}:{name}",
        credentials={"token": token.strip()},
        namespace=namespace,
    )


class KubeClient:
    """Plain HTTPS calls with a bearer-token kubeconfig: exact status codes, no retries.

    The RBAC tests need to see a 403 as a 403; a client library that retries, caches
    discovery or maps errors would blur that.
    """

    def __init__(self, kubeconfig: Path, *, timeout: float = 30) -> None:
        config = yaml.safe_load(kubeconfig.read_text())
        context = next(
            c["context"] for c in config["contexts"] if c["name"] == config["current-context"]
        )
        cluster = next(c["cluster"] for c in config["clusters"] if c["name"] == context["cluster"])
        user = next(u["user"] for u in config["users"] if u["name"] == context["user"])
        if "token" not in user:
            raise ValueError(f"{kubeconfig}: KubeClient supports bearer-token users only")
        self.namespace: str = context.get("namespace", "default")
        tls = ssl.create_default_context(
            cadata=base64.b64decode(cluster["certificate-authority-data"]).decode()
        )
        self._http = httpx.Client(
            base_url=cluster["server"],
            verify=tls,
            headers={"Authorization": f"Bearer {user['token']}"},
            timeout=timeout,
        )

    def request(
        self, method: str, path: str, body: Any = None, *, patch: str = "merge"
    ) -> httpx.Response:
        headers = {}
        if body is not None:
            kind = f"{patch}-patch+json" if method == "PATCH" else "json"
            headers["Content-Type"] = f"application/{kind}"
        return self._http.request(
            method,
            path,
            headers=headers,
            content=None if body is None else json.dumps(body).encode(),
        )

    def watch(self, path: str) -> httpx.Response:
        """Open a watch on path; return the response without waiting for events.

        The server answers with headers (or an error) and then streams until its
        timeout; an error's body is read, a stream's is not. resourceVersion=0, as
        informers and kopf watch from a list's version: without one, kube-apiserver 1.32
        on etcd 3.4 holds the headers back ~3 s for a consistent start.
        """
        sep = "&" if "?" in path else "?"
        query = "watch=1&resourceVersion=0&timeoutSeconds=5"
        with self._http.stream("GET", f"{path}{sep}{query}") as response:
            if response.status_code != 200:
                response.read()
            return response

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> KubeClient:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


def ensure_crds(kubectl: Kubectl, docs: list[dict[str, Any]], timeout: str = "30s") -> list[str]:
    """Create the CRDs among docs that do not exist yet and wait until they are served.

    Returns the names it created, so a caller deletes only those: on an existing
    cluster the real ones may already be installed.
    """
    missing = [
        d for d in docs if kubectl("get", "crd", d["metadata"]["name"], check=False).returncode
    ]
    names = [d["metadata"]["name"] for d in missing]
    if missing:
        kubectl.apply(missing, "--server-side")
        kubectl(
            "wait",
            "--for=condition=Established",
            f"--timeout={timeout}",
            *(f"crd/{n}" for n in names),
        )
    return names


def load_manifests(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]
