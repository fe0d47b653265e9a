import ipaddress

import pytest

from berth_agent.apps import pulse
from berth_api.v1alpha1 import RepositoryPlacementSpec
from berth_lab import manifests
from berth_lab.plan import PlanError, lab_network, plan_lab

pytestmark = pytest.mark.unit


def test_hosts_get_distinct_names_namespaces_and_addresses() -> None:
    plan = plan_lab("demo", hosts=3)
    assert [h.name for h in plan.hosts] == ["host-a", "host-b", "host-c"]
    assert [h.netns for h in plan.hosts] == ["berth-demo-a", "berth-demo-b", "berth-demo-c"]
    assert len({h.address for h in plan.hosts}) == 3
    assert all(h.address in plan.network for h in plan.hosts)
    assert plan.bridge_address not in {h.address for h in plan.hosts}


def test_interface_names_fit_the_kernel_limit() -> None:
    plan = plan_lab("abcdef", hosts=26)
    names = [plan.bridge] + [h.veth_root for h in plan.hosts]
    assert max(len(n) for n in names) <= 15  # IFNAMSIZ - 1


def test_network_is_stable_per_name_and_private() -> None:
    assert lab_network("lab") == lab_network("lab")
    assert lab_network("lab").subnet_of(ipaddress.IPv4Network("10.0.0.0/8"))


def test_host_lookup_by_letter_or_name() -> None:
    plan = plan_lab("lab", hosts=2)
    assert plan.host("b") is plan.host("host-b")
    with pytest.raises(PlanError, match="no host 'host-z'"):
        plan.host("host-z")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"name": "Lab"}, "lab name"),
        ({"name": "toolongname"}, "lab name"),
        ({"name": "a/b"}, "lab name"),
        ({"hosts": 0}, "hosts must be"),
        ({"hosts": 27}, "hosts must be"),
        ({"bandwidth": "fast"}, "not a tc rate"),
        ({"bandwidth": "1gbit; rm -rf /"}, "not a tc rate"),
        ({"datastore_size": "-1G"}, "datastore size"),
    ],
)
def test_bad_input_is_refused(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(PlanError, match=message):
        plan_lab(**kwargs)  # type: ignore[arg-type]


def test_placement_manifest_is_a_valid_spec_with_the_template_fields_only() -> None:
    services = pulse.services(interval=0.2, host_port=8089)
    manifest = manifests.placement(
        "web", "ns", "host-a", services, size="2G", dns={"hostnames": ["web.lab"]}
    )
    spec = RepositoryPlacementSpec.model_validate(manifest["spec"])
    assert (spec.repository, spec.machine) == ("web", "host-a")
    assert spec.template is not None and spec.template.size == "2G"
    [service] = manifest["spec"]["template"]["services"]
    assert set(service) <= set(manifests.TEMPLATE_SERVICE_FIELDS)
    assert service["ports"][0]["host"] == 8089
