"""berth's alert rules (the chart's files/prometheus/alerts.yaml) checked and unit-tested
by Prometheus's own promtool; the dashboard's structure checked beside them."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.monitoring

HERE = Path(__file__).resolve().parent
CHART_FILES = HERE.parents[1] / "charts" / "berth" / "files"
ALERTS = CHART_FILES / "prometheus" / "alerts.yaml"
DASHBOARD = CHART_FILES / "grafana" / "berth.json"
OPERATIONS = HERE.parents[1] / "docs" / "operations.md"


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    binary = shutil.which("promtool")
    assert binary, "promtool is not installed (hack/install-host.sh installs Debian's prometheus)"
    return subprocess.run([binary, *args], cwd=HERE, capture_output=True, text=True, timeout=120)


def test_the_alert_rules_pass_promtool_check_and_their_unit_tests() -> None:
    checked = promtool("check", "rules", str(ALERTS))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "SUCCESS: 4 rules found" in checked.stdout, checked.stdout
    tested = promtool("test", "rules", "alerts_test.yaml")
    print(f"\n[monitoring] promtool test rules alerts_test.yaml\n{tested.stdout}{tested.stderr}")
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert "SUCCESS" in tested.stdout


def test_each_alert_has_a_runbook_in_the_operations_guide() -> None:
    rules = yaml.safe_load(ALERTS.read_text())["groups"][0]["rules"]
    guide = OPERATIONS.read_text()
    for rule in rules:
        anchor = rule["alert"].lower()
        assert rule["annotations"]["runbook"] == f"docs/operations.md#{anchor}"
        assert f"### {rule['alert']}" in guide, f"docs/operations.md has no section {anchor}"


def test_the_dashboard_queries_prometheus_through_its_datasource_variable() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    panels = dashboard["panels"]
    assert len({p["id"] for p in panels}) == len(panels)
    assert [v["name"] for v in dashboard["templating"]["list"]] == ["datasource"]
    for panel in panels:
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["expr"] and target["datasource"]["uid"] == "${datasource}"
