"""The Helm chart: lint, what it renders, and a real install, upgrade and uninstall.

Rendering runs the real helm; the install goes into a kube-apiserver of its own, so the
release owns every object from scratch and nothing of the rest of the run gets in the way.
"""

from __future__ import annotations

import base64
import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from berth_common.pki import CertFiles, create_ca, issue
from berth_lab.cluster import CHART, CRDS
from berth_lab.kube import KubeAPIServer
from berth_lab.kube_tools import crds, helm_binary
from berth_lab.kubeconfig import Kubectl

pytestmark = pytest.mark.ship

TEST_VALUES = CHART / "ci" / "test-values.yaml"
ALERTS = CHART / "files" / "prometheus" / "alerts.yaml"
DASHBOARD = CHART / "files" / "grafana" / "berth.json"
Docs = list[dict[str, Any]]


def helm(*args: str, kubeconfig: Path | None = None) -> subprocess.CompletedProcess[str]:
    flags = ["--kubeconfig", str(kubeconfig)] if kubeconfig else []
    return subprocess.run(
        [str(helm_binary()), *args, *flags], capture_output=True, text=True, timeout=120
    )


def render(*flags: str, values: Path | None = TEST_VALUES) -> Docs:
    args = ["template", "berth", str(CHART), "--namespace", "berth-system", *flags]
    out = helm(*args, *(["-f", str(values)] if values else []))
    assert out.returncode == 0, out.stderr
    return [d for d in yaml.safe_load_all(out.stdout) if d]


def render_error(*flags: str, values: Path | None = TEST_VALUES) -> str:
    args = ["template", "berth", str(CHART), *flags, *(["-f", str(values)] if values else [])]
    out = helm(*args)
    assert out.returncode != 0, "rendered although it should have been refused"
    return out.stderr


def only(docs: Docs, kind: str) -> dict[str, Any]:
    (doc,) = [d for d in docs if d["kind"] == kind]
    return doc


def kinds(docs: Docs) -> list[str]:
    return sorted(d["kind"] for d in docs)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, CertFiles]:
    """A CA and the operator's certificate, as `berth-agent pki` would make them."""
    root = tmp_path_factory.mktemp("pki")
    ca = create_ca(CertFiles(root / "ca.crt", root / "ca.key"))
    operator = issue(ca, CertFiles(root / "tls.crt", root / "tls.key"), "berth-operator")
    return {"ca": ca, "operator": operator}


def test_chart_lints_strictly() -> None:
    out = helm("lint", "--strict", str(CHART), "-f", str(TEST_VALUES))
    assert out.returncode == 0, out.stdout + out.stderr
    assert "1 chart(s) linted, 0 chart(s) failed" in out.stdout


def test_default_install_renders_everything_the_operator_needs() -> None:
    docs = render()
    assert kinds(docs) == sorted(
        ["ServiceAccount", "ClusterRoleBinding", "Service", "Deployment"]
        + ["ClusterRole"] * 4  # the operator's; people's session requester, logs and exec
        + ["CustomResourceDefinition"] * 3
        + ["ClusterKopfPeering"]
    )


def test_without_certificates_the_chart_refuses_with_a_clear_message() -> None:
    error = render_error(values=None)
    assert "operatorTLS: set existingSecret" in error
    assert "docs/install.md" in error


@pytest.mark.parametrize(
    ("flag", "complaint"),
    [
        ("replicaCount=two", "replicaCount"),
        ("replicas=2", "replicas"),  # a typo of replicaCount: not silently ignored
        ("logLevel=loud", "logLevel"),
        ("metrics.port=70000", "port"),
        ("operatorTLS.cert=not-a-pem", "cert"),
        ("watchNamespaces[0]=Not_A_Namespace", "watchNamespaces"),
    ],
)
def test_values_schema_refuses_bad_values(flag: str, complaint: str) -> None:
    error = render_error("--set", flag)
    assert "values don't meet the specifications of the schema" in error
    assert complaint in error


def test_crds_are_the_generated_files_kept_on_uninstall() -> None:
    rendered = {d["metadata"]["name"]: d for d in render() if d["kind"].endswith("Definition")}
    files = {}
    for path in CRDS.glob("*.yaml"):
        crd = yaml.safe_load(path.read_text())
        files[crd["metadata"]["name"]] = crd
    assert rendered.keys() == files.keys()
    for name, crd in rendered.items():
        metadata = crd.pop("metadata")
        assert metadata["annotations"] == {"helm.sh/resource-policy": "keep"}
        # Exactly the file's content: no number or string mangled on the way through.
        assert crd == {k: v for k, v in files[name].items() if k != "metadata"}, name


def test_crds_toggle_and_keep_policy() -> None:
    assert "CustomResourceDefinition" not in kinds(render("--set", "crds.install=false"))
    unkept = [d for d in render("--set", "crds.keep=false") if d["kind"].endswith("Definition")]
    assert unkept and all("annotations" not in d["metadata"] or not
                          d["metadata"]["annotations"] for d in unkept)  # fmt: skip


def test_deployment_is_recreated_probed_and_locked_down() -> None:
    docs = render("--set", "peering.name=fleet", "--set", "watchNamespaces={apps,db}")
    deployment = only(docs, "Deployment")
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}
    pod = deployment["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    (container,) = pod["containers"]
    security = container["securityContext"]
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"] == {"drop": ["ALL"]}
    probe = container["livenessProbe"]["httpGet"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert probe == {"path": "/healthz", "port": "health"}
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert int(env["BERTH_HEALTH_PORT"]) == ports["health"]
    assert int(env["BERTH_METRICS_PORT"]) == ports["metrics"]
    assert env["BERTH_NAMESPACES"] == "apps,db"
    # kopf's peering id: without POD_ID kopf looks the uid up in /etc/passwd.
    assert container["env"][[e["name"] for e in container["env"]].index("POD_ID")]["valueFrom"]
    # The operator peers in the very object the chart creates.
    assert env["BERTH_PEERING"] == only(docs, "ClusterKopfPeering")["metadata"]["name"] == "fleet"
    mounts = {m["name"]: m for m in container["volumeMounts"]}
    assert mounts["tls"]["mountPath"] == env["BERTH_TLS_DIR"] and mounts["tls"]["readOnly"]
    (tls,) = [v for v in pod["volumes"] if v["name"] == "tls"]
    secrets = [s["secret"]["name"] for s in tls["projected"]["sources"]]
    assert secrets == ["berth-operator-tls", "berth-agents-ca"]
    files = [i["path"] for s in tls["projected"]["sources"] for i in s["secret"]["items"]]
    assert sorted(files) == ["ca.crt", "tls.crt", "tls.key"]


def test_certificates_given_as_values_become_secrets_and_roll_the_operator(
    pki: dict[str, CertFiles],
) -> None:
    flags = [
        *("--set-file", f"operatorTLS.cert={pki['operator'].cert}"),
        *("--set-file", f"operatorTLS.key={pki['operator'].key}"),
        *("--set-file", f"agentsCA.cert={pki['ca'].cert}"),
    ]
    docs = render(*flags, values=None)
    secrets = {d["metadata"]["name"]: d for d in docs if d["kind"] == "Secret"}
    assert secrets.keys() == {"berth-operator-tls", "berth-agents-ca"}
    operator = secrets["berth-operator-tls"]
    assert operator["type"] == "kubernetes.io/tls"
    assert base64.b64decode(operator["data"]["tls.crt"]) == pki["operator"].cert.read_bytes()
    ca = base64.b64decode(secrets["berth-agents-ca"]["data"]["ca.crt"])
    assert ca == pki["ca"].cert.read_bytes()

    def checksum(docs: Docs) -> str:
        annotations = only(docs, "Deployment")["spec"]["template"]["metadata"]["annotations"]
        return str(annotations["checksum/tls"])

    swapped = render(*flags[:-2], "--set-file", f"agentsCA.cert={pki['operator'].cert}")
    assert checksum(swapped) != checksum(docs)


def operator_role(docs: Docs) -> dict[str, Any]:
    """The ClusterRole the operator's ServiceAccount is bound to."""
    bound = only(docs, "ClusterRoleBinding")["roleRef"]["name"]
    (role,) = [d for d in docs if d["kind"] == "ClusterRole" and d["metadata"]["name"] == bound]
    return role


def test_rbac_is_least_privilege() -> None:
    docs = render("--set", "peering.name=fleet")
    role = operator_role(docs)
    resources = {r for rule in role["rules"] for r in rule["resources"]}
    assert resources == {
        "customresourcedefinitions",
        "repositoryplacements",
        "repositoryplacements/status",
        "machines",
        "machines/status",
        "events",
        "clusterkopfpeerings",
        "dnsendpoints",  # spec.dns
        # sessions (kubectl berth logs/exec): people's CSRs, reviewed, answered
        "certificatesigningrequests",
        "certificatesigningrequests/approval",
        "certificatesigningrequests/status",
        "signers",
        "subjectaccessreviews",
        "secrets",  # spec.credentialsSecretRef: an encrypted repository's key
    }
    (signers,) = [r for r in role["rules"] if "signers" in r["resources"]]
    assert signers["resourceNames"] == ["berth.dev/repository-session"]
    (secrets,) = [r for r in role["rules"] if "secrets" in r["resources"]]
    assert secrets["verbs"] == ["get"], "Secrets are read one by one, never listed or watched"
    # People's roles: asking for a session, and logs or exec on placements; nothing more.
    people = {
        d["metadata"]["name"]: {(r, v) for rule in d["rules"] for r in rule["resources"]
                                for v in rule["verbs"]}
        for d in docs if d["kind"] == "ClusterRole" and d is not role
    }  # fmt: skip
    assert people == {
        "berth-session-requester": {
            ("certificatesigningrequests", "create"),
            ("certificatesigningrequests", "get"),
            ("machines", "get"),
        },
        "berth-repository-logs": {("repositoryplacements/logs", "get")},
        "berth-repository-exec": {("repositoryplacements/exec", "create")},
    }
    for rule in role["rules"]:
        assert "*" not in rule["verbs"] + rule["resources"] + rule["apiGroups"]
        assert not {"deletecollection", "escalate", "bind"} & set(rule["verbs"])
        # The operator deletes nothing but the DNS records a placement owns.
        assert "delete" not in rule["verbs"] or rule["resources"] == ["dnsendpoints"]
        if "patch" in rule["verbs"] and "clusterkopfpeerings" in rule["resources"]:
            assert rule["resourceNames"] == ["fleet"]


def test_metrics_service_and_optional_service_monitor() -> None:
    docs = render()
    service = only(docs, "Service")
    deployment = only(docs, "Deployment")
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= labels.items()
    assert service["spec"]["ports"][0]["targetPort"] == "metrics"
    assert "ServiceMonitor" not in kinds(docs)

    error = render_error("--set", "metrics.serviceMonitor.enabled=true")
    assert "no monitoring.coreos.com/v1 ServiceMonitor" in error
    with_monitor = render(
        "--set", "metrics.serviceMonitor.enabled=true",
        "--api-versions", "monitoring.coreos.com/v1/ServiceMonitor",
    )  # fmt: skip
    monitor = only(with_monitor, "ServiceMonitor")
    assert (
        monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    )
    assert monitor["spec"]["endpoints"][0]["port"] == "metrics"
    # The state gauges' own `namespace` label must not become `exported_namespace`.
    assert monitor["spec"]["endpoints"][0]["honorLabels"] is True
    assert "Service" not in kinds(render("--set", "metrics.enabled=false"))


# -- a real install ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Kubectl]:
    with KubeAPIServer() as server:
        yield Kubectl(server.admin_kubeconfig, cache_dir=tmp_path_factory.mktemp("kubecache"))


def test_install_upgrade_uninstall_on_a_real_api_server(
    cluster: Kubectl, pki: dict[str, CertFiles]
) -> None:
    kubeconfig = cluster.kubeconfig
    certs = [
        *("--set-file", f"operatorTLS.cert={pki['operator'].cert}"),
        *("--set-file", f"operatorTLS.key={pki['operator'].key}"),
        *("--set-file", f"agentsCA.cert={pki['ca'].cert}"),
    ]
    ns = ["--namespace", "berth-system"]
    install = helm("install", "berth", str(CHART), *ns, "--create-namespace", *certs,
                   kubeconfig=kubeconfig)  # fmt: skip
    assert install.returncode == 0, install.stderr
    assert "STATUS: deployed" in install.stdout
    for crd in ("repositoryplacements.berth.dev", "machines.berth.dev"):
        cluster("wait", "--for=condition=Established", "--timeout=30s", f"crd/{crd}")
    # The post-install hook made the peering object the operator will meet in.
    cluster("get", "clusterkopfpeering.kopf.dev", "berth")
    deployment = cluster.json("get", "deployment", "berth", "-n", "berth-system", "-o", "json")
    assert deployment["spec"]["strategy"]["type"] == "Recreate"
    secret = cluster.json("get", "secret", "berth-operator-tls", "-n", "berth-system", "-o", "json")
    assert secret["type"] == "kubernetes.io/tls"

    # A placement made while berth is installed: it must outlive an uninstall.
    cluster("create", "namespace", "apps")
    placement = {
        "apiVersion": "berth.dev/v1alpha1",
        "kind": "RepositoryPlacement",
        "metadata": {"name": "pulse", "namespace": "apps"},
        "spec": {"repository": "pulse", "machine": "host-a"},
    }
    cluster.apply(placement)

    upgrade = helm("upgrade", "berth", str(CHART), *ns, "--reuse-values",
                   "--set", "logLevel=debug", kubeconfig=kubeconfig)  # fmt: skip
    assert upgrade.returncode == 0, upgrade.stderr
    deployment = cluster.json("get", "deployment", "berth", "-n", "berth-system", "-o", "json")
    env = {
        e["name"]: e.get("value")
        for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]
    }
    assert env["BERTH_LOG_LEVEL"] == "debug"

    uninstall = helm("uninstall", "berth", *ns, kubeconfig=kubeconfig)
    assert uninstall.returncode == 0, uninstall.stderr
    assert "kept due to the resource policy" in uninstall.stdout + uninstall.stderr
    gone = cluster("get", "deployment", "berth", "-n", "berth-system", check=False)
    assert gone.returncode != 0 and "NotFound" in gone.stderr
    assert cluster("get", "clusterrole", "berth", check=False).returncode != 0
    # CRDs and the placement are still there.
    kept = cluster.json("get", "repositoryplacement", "pulse", "-n", "apps", "-o", "json")
    assert kept["spec"]["machine"] == "host-a"

    # Installing again adopts the kept CRDs (same release name), as after a mistaken uninstall.
    again = helm("install", "berth", str(CHART), *ns, *certs, kubeconfig=kubeconfig)
    assert again.returncode == 0, again.stderr
    # And a second release beside existing CRDs installs with crds.install=false.
    other = helm("install", "berth-b", str(CHART), "--namespace", "berth-b", "--create-namespace",
                 *certs, "--set", "crds.install=false", "--set", "peering.name=berth-b",
                 kubeconfig=kubeconfig)  # fmt: skip
    assert other.returncode == 0, other.stderr
    cluster("get", "clusterkopfpeering.kopf.dev", "berth-b")


def test_monitoring_objects_pass_the_prometheus_operators_crds(cluster: Kubectl) -> None:
    """The ServiceMonitor, the PrometheusRule (berth's alerts file, as it is) and the
    dashboard's ConfigMap, validated by a real API server against the Prometheus
    Operator's own CRDs (strict: an unknown field is refused)."""
    for crd in crds("monitoring"):
        cluster("apply", "--server-side", "-f", str(crd))
    for name in ("servicemonitors", "prometheusrules"):
        cluster("wait", "--for=condition=Established", "--timeout=30s",
                f"crd/{name}.monitoring.coreos.com")  # fmt: skip
    assert "PrometheusRule" not in kinds(render())
    assert "no monitoring.coreos.com/v1 PrometheusRule" in render_error(
        "--set", "metrics.prometheusRule.enabled=true"
    )
    docs = render(
        "--set", "metrics.serviceMonitor.enabled=true",
        "--set", "metrics.prometheusRule.enabled=true",
        "--set", "metrics.prometheusRule.labels.release=prometheus",
        "--set", "metrics.grafanaDashboard.enabled=true",
        "--api-versions", "monitoring.coreos.com/v1/ServiceMonitor",
        "--api-versions", "monitoring.coreos.com/v1/PrometheusRule",
    )  # fmt: skip
    rule = only(docs, "PrometheusRule")
    assert rule["spec"] == yaml.safe_load(ALERTS.read_text())
    assert rule["metadata"]["labels"]["release"] == "prometheus"
    dashboard = next(d for d in docs if d["kind"] == "ConfigMap" and "berth.json" in d["data"])
    assert dashboard["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert json.loads(dashboard["data"]["berth.json"]) == json.loads(DASHBOARD.read_text())
    cluster("create", "namespace", "berth-system", check=False)
    for doc in (only(docs, "ServiceMonitor"), rule, dashboard):
        checked = cluster.apply(doc, "--dry-run=server", "--validate=strict")
        print(f"\n[chart] {checked.strip()}")
