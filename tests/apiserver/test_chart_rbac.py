"""The Helm chart's RBAC, rendered by the real helm, against the real authorizer.

Every call the operator makes is listed in CALLS with the permission it needs. The
operator's ServiceAccount, bound by the chart to exactly its ClusterRole, must be able
to make each of them; the ClusterRole must grant nothing else; and removing any one verb
from the rendered ClusterRole must make exactly that call fail with 403.
"""

from __future__ import annotations

import base64
import copy
import json
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from cryptography.hazmat.primitives.asymmetric import ec

from berth_common.pki import CertFiles, create_ca
from berth_common.sessions import SIGNER_NAME, SessionRequest, SessionVerb, build_request
from berth_lab.kube_tools import external_dns_crd, helm_binary
from berth_lab.kubeconfig import (
    KubeClient,
    Kubectl,
    ensure_crds,
    load_manifests,
    service_account_kubeconfig,
)

pytestmark = [pytest.mark.apiserver, pytest.mark.faults]  # faults: least privilege
HERE = Path(__file__).resolve().parent

CHART = HERE.parent.parent / "charts" / "berth"
CRD_FILES = HERE.parent.parent / "crds"
RBAC_KINDS = {"ServiceAccount", "ClusterRole", "ClusterRoleBinding"}
# RBAC changes reach the authorizer through an informer: allow it a moment.
PROPAGATION = 10.0

Names = dict[str, str]
CRDS = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"
PLACEMENT = "/apis/berth.dev/v1alpha1/namespaces/{ns}/repositoryplacements/rp-1"
MACHINE = "/apis/berth.dev/v1alpha1/machines/{machine}"
CLUSTER_PEERING = "/apis/kopf.dev/v1/clusterkopfpeerings/{peering}"
DNS_ENDPOINT = "/apis/externaldns.k8s.io/v1alpha1/namespaces/{ns}/dnsendpoints/rp-1"
DNS_ENDPOINT_DELETED = "/apis/externaldns.k8s.io/v1alpha1/namespaces/{ns}/dnsendpoints/rp-gone"
CSRS = "/apis/certificates.k8s.io/v1/certificatesigningrequests"
CSR = CSRS + "/{csr}"
SIGNERS = "signers"  # approve and sign: checked by the API server's admission, per signer


def annotate(_: Names) -> Any:
    return {"metadata": {"annotations": {"berth.dev/rbac-test": str(time.time())}}}


def status_patch(_: Names) -> Any:
    return {"status": {"observedGeneration": 1}}


def peering_patch(_: Names) -> Any:
    # What kopf writes: its own entry in the peering object's status.
    return {"status": {"rbac-test": {"priority": 0, "lifetime": 60}}}


def dns_endpoint(_: Names) -> Any:
    return {"apiVersion": "externaldns.k8s.io/v1alpha1", "kind": "DNSEndpoint",
            "metadata": {"generateName": "rp-1-"}, "spec": {"endpoints": []}}  # fmt: skip


def event(names: Names) -> Any:
    return {
        "metadata": {"generateName": "rp-1."},
        "involvedObject": {
            "apiVersion": "berth.dev/v1alpha1",
            "kind": "RepositoryPlacement",
            "namespace": names["ns"],
            "name": "rp-1",
        },
        "reason": "Logging",
        "message": "rbac test",
        "type": "Normal",
    }


def access_review(names: Names) -> Any:
    return {"apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview",
            "spec": {"user": "someone", "resourceAttributes": {
                "group": "berth.dev", "resource": "repositoryplacements", "subresource": "logs",
                "verb": "get", "namespace": names["ns"], "name": "rp-1"}}}  # fmt: skip


def approved(names: Names, current: Any) -> Any:
    """The session CSR with an Approved condition, as the operator's signer writes it."""
    condition = {"type": "Approved", "status": "True", "reason": "BerthSession", "message": "rbac"}
    current.setdefault("status", {})["conditions"] = [condition]
    return current


def signed(names: Names, current: Any) -> Any:
    """The approved session CSR with a certificate, as the signer writes it."""
    current.setdefault("status", {})["certificate"] = names["certificate"]
    return current


@dataclass(frozen=True)
class Call:
    """One request the operator makes, and the single permission it needs."""

    group: str
    resource: str
    verb: str
    method: str  # GET, WATCH, PATCH, PUT (of the object as it is), POST
    path: str
    body: Callable[[Names], Any] | None = None
    edit: Callable[[Names, Any], Any] | None = None  # PUT: what changes in the object

    @property
    def permission(self) -> tuple[str, str, str]:
        return (self.group, self.resource, self.verb)

    @property
    def id(self) -> str:
        return f"{self.group or 'core'}:{self.resource}:{self.verb}"


def crud(group: str, plural: str, item: str, listing: str) -> list[Call]:
    return [
        Call(group, plural, "get", "GET", item),
        Call(group, plural, "list", "GET", listing),
        Call(group, plural, "watch", "WATCH", listing),
        Call(group, plural, "patch", "PATCH", item, annotate),
        Call(group, plural, "update", "PUT", item),
        Call(group, f"{plural}/status", "get", "GET", f"{item}/status"),
        Call(group, f"{plural}/status", "patch", "PATCH", f"{item}/status", status_patch),
        Call(group, f"{plural}/status", "update", "PUT", f"{item}/status"),
    ]


def peering(plural: str, item: str, listing: str) -> list[Call]:
    return [
        Call("kopf.dev", plural, "get", "GET", item),
        Call("kopf.dev", plural, "list", "GET", listing),
        Call("kopf.dev", plural, "watch", "WATCH", listing),
        Call("kopf.dev", plural, "patch", "PATCH", item, peering_patch),
    ]


CALLS: list[Call] = [
    Call("apiextensions.k8s.io", "customresourcedefinitions", "get", "GET",
         f"{CRDS}/repositoryplacements.berth.dev"),
    Call("apiextensions.k8s.io", "customresourcedefinitions", "list", "GET", CRDS),
    Call("apiextensions.k8s.io", "customresourcedefinitions", "watch", "WATCH", CRDS),
    # Cluster-wide lists and watches, as kopf serves all namespaces.
    *crud("berth.dev", "repositoryplacements", PLACEMENT,
          "/apis/berth.dev/v1alpha1/repositoryplacements"),
    *crud("berth.dev", "machines", MACHINE, "/apis/berth.dev/v1alpha1/machines"),
    Call("", "events", "create", "POST", "/api/v1/namespaces/{ns}/events", event),
    Call("externaldns.k8s.io", "dnsendpoints", "create", "POST",
         "/apis/externaldns.k8s.io/v1alpha1/namespaces/{ns}/dnsendpoints", dns_endpoint),
    Call("externaldns.k8s.io", "dnsendpoints", "get", "GET", DNS_ENDPOINT),
    Call("externaldns.k8s.io", "dnsendpoints", "patch", "PATCH", DNS_ENDPOINT, annotate),
    Call("externaldns.k8s.io", "dnsendpoints", "delete", "DELETE", DNS_ENDPOINT_DELETED),
    *peering("clusterkopfpeerings", CLUSTER_PEERING, "/apis/kopf.dev/v1/clusterkopfpeerings"),
    # Sessions (kubectl berth logs/exec): people's CSRs, reviewed, then answered.
    Call("certificates.k8s.io", "certificatesigningrequests", "list", "GET", CSRS),
    Call("certificates.k8s.io", "certificatesigningrequests", "watch", "WATCH", CSRS),
    Call("certificates.k8s.io", "certificatesigningrequests/approval", "update", "PUT",
         f"{CSR}/approval"),
    Call("certificates.k8s.io", "certificatesigningrequests/status", "update", "PUT",
         f"{CSR}/status"),
    Call("authorization.k8s.io", "subjectaccessreviews", "create", "POST",
         "/apis/authorization.k8s.io/v1/subjectaccessreviews", access_review),
    # spec.credentialsSecretRef: the LUKS key, read when an agent needs it.
    Call("", "secrets", "get", "GET", "/api/v1/namespaces/{ns}/secrets/berth-credentials"),
]  # fmt: skip
# The signer's two rights, which admission checks (its message differs from RBAC's).
SIGNER_CALLS: list[Call] = [
    Call("certificates.k8s.io", SIGNERS, "approve", "PUT", f"{CSR}/approval", edit=approved),
    Call("certificates.k8s.io", SIGNERS, "sign", "PUT", f"{CSR}/status", edit=signed),
]  # fmt: skip

# Refused: kopf serves cluster-wide (no namespace observation, no namespaced peering), and
# the operator never lists Secrets or touches anything it does not own.
REFUSED: list[Call] = [
    Call("", "namespaces", "list", "GET", "/api/v1/namespaces"),
    Call("", "secrets", "list", "GET", "/api/v1/secrets"),
    Call("", "pods", "list", "GET", "/api/v1/pods"),
    Call("kopf.dev", "kopfpeerings", "list", "GET", "/apis/kopf.dev/v1/kopfpeerings"),
    Call("kopf.dev", "clusterkopfpeerings", "patch", "PATCH",
         "/apis/kopf.dev/v1/clusterkopfpeerings/{other_peering}", peering_patch),
    Call("berth.dev", "repositoryplacements", "delete", "DELETE", PLACEMENT),
    Call("berth.dev", "repositoryplacements", "create", "POST",
         "/apis/berth.dev/v1alpha1/namespaces/{ns}/repositoryplacements", annotate),
    Call("apiextensions.k8s.io", "customresourcedefinitions", "delete", "DELETE",
         f"{CRDS}/repositoryplacements.berth.dev"),
    Call("externaldns.k8s.io", "dnsendpoints", "list", "GET",
         "/apis/externaldns.k8s.io/v1alpha1/dnsendpoints"),
    Call("certificates.k8s.io", "certificatesigningrequests", "delete", "DELETE", CSR),
]  # fmt: skip


def session_csr(kubectl: Kubectl, name: str, signer: str = SIGNER_NAME) -> str:
    """A CSR as `kubectl berth logs` makes one (here by the admin), for signer."""
    key = ec.generate_private_key(ec.SECP256R1())
    pem = build_request(key, SessionRequest("ns", "rp-1", SessionVerb.LOGS))
    kubectl.apply({"apiVersion": "certificates.k8s.io/v1", "kind": "CertificateSigningRequest",
                   "metadata": {"name": name},
                   "spec": {"request": base64.b64encode(pem).decode(), "signerName": signer,
                            "usages": ["digital signature", "client auth"]}})  # fmt: skip
    return name


def throwaway_certificate() -> bytes:
    with tempfile.TemporaryDirectory() as tmp:
        ca = create_ca(CertFiles(Path(tmp, "ca.crt"), Path(tmp, "ca.key")), cn="rbac test")
        return ca.cert.read_bytes()


def perform(call: Call, client: KubeClient, admin: Kubectl, names: Names) -> httpx.Response:
    path = call.path.format(**names)
    if call.method == "WATCH":
        return client.watch(path)
    if call.method == "PUT":
        # The object as it is now, read by the admin: an update needs no get permission.
        current = json.loads(admin("get", "--raw", path).stdout)
        return client.request("PUT", path, call.edit(names, current) if call.edit else current)
    return client.request(call.method, path, call.body(names) if call.body else None)


def render(release: str, namespace: str, kube_version: str, peering: str) -> list[dict[str, Any]]:
    out = subprocess.run(
        [str(helm_binary()), "template", release, str(CHART), "--namespace", namespace,
         "--kube-version", kube_version, "--set", f"peering.name={peering}",
         "--set", "operatorTLS.existingSecret=operator-tls",
         "--set", "agentsCA.existingSecret=agents-ca"],
        check=True, capture_output=True, text=True,
    ).stdout  # fmt: skip
    return [d for d in yaml.safe_load_all(out) if d]


def cluster_role(docs: list[dict[str, Any]]) -> dict[str, Any]:
    """The operator's: the one its ServiceAccount is bound to (the others are people's)."""
    (binding,) = [d for d in docs if d["kind"] == "ClusterRoleBinding"]
    name = binding["roleRef"]["name"]
    (role,) = [d for d in docs if d["kind"] == "ClusterRole" and d["metadata"]["name"] == name]
    return role


def permissions(role: dict[str, Any]) -> set[tuple[str, str, str]]:
    return {
        (group, resource, verb)
        for rule in role["rules"]
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }


def without(role: dict[str, Any], group: str, resource: str, verb: str) -> dict[str, Any]:
    """role with one verb taken away from one resource, everything else unchanged."""
    role = copy.deepcopy(role)
    rules = []
    for rule in role["rules"]:
        if group in rule["apiGroups"] and resource in rule["resources"] and verb in rule["verbs"]:
            others = [r for r in rule["resources"] if r != resource]
            if others:
                rules.append({**rule, "resources": others})
            verbs = [v for v in rule["verbs"] if v != verb]
            if verbs:
                rules.append({**rule, "resources": [resource], "verbs": verbs})
        else:
            rules.append(rule)
    role["rules"] = rules
    return role


@dataclass
class Operator:
    """The chart's RBAC applied under one release, and a kubeconfig for its ServiceAccount."""

    docs: list[dict[str, Any]]
    kubeconfig: Path

    @property
    def role(self) -> dict[str, Any]:
        return cluster_role(self.docs)


@pytest.fixture(scope="module")
def names(kubectl: Kubectl, namespace: str, suffix: str) -> Iterator[Names]:
    """The objects the calls act on, created by the admin, and the CRDs they need."""
    # The real CRDs (crds/, the chart's are the same), and external-dns's DNSEndpoint.
    files = [*sorted(CRD_FILES.glob("*.yaml")), external_dns_crd()]
    crds = [d for path in files for d in load_manifests(path)]
    created = ensure_crds(kubectl, crds)
    names = {
        "ns": namespace,
        "machine": f"m-{suffix}",
        "peering": f"berth-{suffix}",
        "other_peering": f"other-{suffix}",
    }
    objects: list[dict[str, Any]] = [
        {"apiVersion": "berth.dev/v1alpha1", "kind": "RepositoryPlacement",
         "metadata": {"name": "rp-1", "namespace": namespace},
         "spec": {"repository": "rp-1", "machine": "a"}},
        {"apiVersion": "berth.dev/v1alpha1", "kind": "Machine",
         "metadata": {"name": names["machine"]}, "spec": {"endpoint": "https://a:7443"}},
        {"apiVersion": "kopf.dev/v1", "kind": "ClusterKopfPeering",
         "metadata": {"name": names["peering"]}},
        {"apiVersion": "kopf.dev/v1", "kind": "ClusterKopfPeering",
         "metadata": {"name": names["other_peering"]}},
        {"apiVersion": "externaldns.k8s.io/v1alpha1", "kind": "DNSEndpoint",
         "metadata": {"name": "rp-1", "namespace": namespace}, "spec": {"endpoints": []}},
        {"apiVersion": "externaldns.k8s.io/v1alpha1", "kind": "DNSEndpoint",
         "metadata": {"name": "rp-gone", "namespace": namespace}, "spec": {"endpoints": []}},
        {"apiVersion": "v1", "kind": "Secret",
         "metadata": {"name": "berth-credentials", "namespace": namespace},
         "stringData": {"token": "not-a-secret"}},
    ]  # fmt: skip
    kubectl.apply(objects)
    names["csr"] = session_csr(kubectl, f"rbac-{suffix}")
    names["certificate"] = base64.b64encode(throwaway_certificate()).decode()
    yield names
    kubectl("delete", "csr", names["csr"], check=False)
    kubectl("delete", "machine.berth.dev", names["machine"], check=False)
    for peering in (names["peering"], names["other_peering"]):
        kubectl("delete", "clusterkopfpeering.kopf.dev", peering, check=False)
    for crd in created:
        kubectl("delete", "crd", crd, "--wait=false", check=False)


def install_rbac(
    kubectl: Kubectl, docs: list[dict[str, Any]], namespace: str, path: Path
) -> Operator:
    kubectl.apply([d for d in docs if d["kind"] in RBAC_KINDS])
    (sa,) = [d["metadata"]["name"] for d in docs if d["kind"] == "ServiceAccount"]
    return Operator(docs, service_account_kubeconfig(kubectl, namespace, sa, path))


def uninstall_rbac(kubectl: Kubectl, docs: list[dict[str, Any]]) -> None:
    for doc in docs:
        if doc["kind"] in {"ClusterRole", "ClusterRoleBinding"}:
            kubectl("delete", doc["kind"].lower(), doc["metadata"]["name"], check=False)


@pytest.fixture(scope="module")
def operator(
    kubectl: Kubectl,
    namespace: str,
    suffix: str,
    server_version: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Operator]:
    """The chart as rendered, its RBAC applied, for the release berth-<suffix>."""
    docs = render(f"berth-{suffix}", namespace, server_version, f"berth-{suffix}")
    path = tmp_path_factory.mktemp("operator") / "kubeconfig"
    yield install_rbac(kubectl, docs, namespace, path)
    uninstall_rbac(kubectl, docs)


@pytest.fixture(scope="module")
def crippled(
    kubectl: Kubectl,
    namespace: str,
    suffix: str,
    server_version: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Operator]:
    """A second release whose ClusterRole the removal tests edit, one verb at a time."""
    docs = render(f"minus-{suffix}", namespace, server_version, f"berth-{suffix}")
    path = tmp_path_factory.mktemp("crippled") / "kubeconfig"
    yield install_rbac(kubectl, docs, namespace, path)
    uninstall_rbac(kubectl, docs)


def until(
    done: Callable[[httpx.Response], bool],
    call: Call,
    client: KubeClient,
    admin: Kubectl,
    names: Names,
) -> httpx.Response:
    """perform(call) until done(response), for at most PROPAGATION seconds."""
    deadline = time.monotonic() + PROPAGATION
    while True:
        response = perform(call, client, admin, names)
        if done(response) or time.monotonic() > deadline:
            return response
        time.sleep(0.1)


def allowed(response: httpx.Response) -> bool:
    return response.is_success


def forbidden(response: httpx.Response) -> bool:
    return response.status_code == 403


def test_cluster_role_grants_exactly_what_the_operator_calls(operator: Operator) -> None:
    granted = permissions(operator.role)
    needed = {call.permission for call in [*CALLS, *SIGNER_CALLS]}
    assert granted - needed == set(), "granted but never used by the operator"
    assert needed - granted == set(), "used by the operator but not granted"


def test_operator_service_account_can_make_every_call(
    kubectl: Kubectl, operator: Operator, names: Names
) -> None:
    whoami = Kubectl(operator.kubeconfig).json("auth", "whoami")["status"]["userInfo"]
    assert whoami["username"].startswith(f"system:serviceaccount:{names['ns']}:")
    failures = []
    with KubeClient(operator.kubeconfig) as client:
        for call in CALLS:
            response = until(allowed, call, client, kubectl, names)
            if not response.is_success:
                failures.append(f"{call.id}: {response.status_code} {response.text[:300]}")
    assert failures == []


@pytest.mark.parametrize("call", CALLS, ids=[c.id for c in CALLS])
def test_removing_a_permission_makes_its_call_forbidden(
    kubectl: Kubectl, crippled: Operator, names: Names, call: Call
) -> None:
    role = without(crippled.role, *call.permission)
    assert permissions(crippled.role) - permissions(role) == {call.permission}
    kubectl.apply(role)
    with KubeClient(crippled.kubeconfig) as client:
        response = until(forbidden, call, client, kubectl, names)
    assert response.status_code == 403, f"{call.id} still allowed: {response.text[:300]}"
    group = f'in API group "{call.group}"'
    message = response.json()["message"]
    assert f'cannot {call.verb} resource "{call.resource}" {group}' in message
    print(f"\n{call.id} removed -> {call.method} {call.path.format(**names)}: 403 {message}")


@pytest.mark.parametrize("call", REFUSED, ids=[c.id for c in REFUSED])
def test_operator_service_account_is_refused_everything_else(
    kubectl: Kubectl, operator: Operator, names: Names, call: Call
) -> None:
    with KubeClient(operator.kubeconfig) as client:
        response = perform(call, client, kubectl, names)
    assert response.status_code == 403, f"{call.id} allowed: {response.text[:300]}"


def test_the_operator_approves_and_signs_for_berth_sessions_only(
    kubectl: Kubectl, operator: Operator, names: Names, suffix: str
) -> None:
    """Its signer rights name berth's signer: another signer's CSR is not its to answer."""
    with KubeClient(operator.kubeconfig) as client:
        for call in SIGNER_CALLS:
            response = until(allowed, call, client, kubectl, names)
            assert response.is_success, f"{call.id}: {response.status_code} {response.text[:300]}"
        other = {**names, "csr": session_csr(kubectl, f"other-{suffix}", "example.com/other")}
        try:
            refused = perform(SIGNER_CALLS[0], client, kubectl, other)
        finally:
            kubectl("delete", "csr", other["csr"], check=False)
    assert refused.status_code == 403, refused.text[:300]
    assert 'approve requests with signerName "example.com/other"' in refused.json()["message"]


@pytest.mark.parametrize("call", SIGNER_CALLS, ids=[c.id for c in SIGNER_CALLS])
def test_removing_a_signer_right_makes_its_answer_forbidden(
    kubectl: Kubectl, crippled: Operator, names: Names, suffix: str, call: Call
) -> None:
    role = without(crippled.role, *call.permission)
    assert permissions(crippled.role) - permissions(role) == {call.permission}
    kubectl.apply(role)
    fresh = {**names, "csr": session_csr(kubectl, f"minus-{call.verb}-{suffix}")}
    try:
        if call.verb == "sign":  # signing needs an approved request: the admin approves it
            kubectl("certificate", "approve", fresh["csr"])
        with KubeClient(crippled.kubeconfig) as client:
            response = until(forbidden, call, client, kubectl, fresh)
    finally:
        kubectl("delete", "csr", fresh["csr"], check=False)
        kubectl.apply(crippled.role)
    assert response.status_code == 403, f"{call.id} still allowed: {response.text[:300]}"
    message = response.json()["message"]
    assert f'{call.verb} requests with signerName "{SIGNER_NAME}"' in message, message
    print(f"\n{call.id} removed -> PUT {call.path.format(**fresh)}: 403 {message}")
