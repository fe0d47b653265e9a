"""A real Prometheus (Debian's) scraping the lab's operator and both agents (mutual TLS)
through real moves: one that succeeds over its downtime budget, one that rolls back, a
placement Stalled, a Machine whose agent is down. Then each alert rule's expression and
each dashboard panel's query is asked of that Prometheus, and must return series."""

from __future__ import annotations

import json
import math
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from berth_common.agent_api.client import tls_context
from berth_lab import Lab
from berth_lab.cluster import LabCluster
from berth_lab.kubeconfig import Kubectl
from berth_lab.plan import AGENT_PORT
from berth_lab.prometheus_service import ALERT_RULES, LabPrometheus, ScrapeTargets
from e2e.helpers import condition, create_pulse, move, placement, until, wait_current

pytestmark = [pytest.mark.monitoring, pytest.mark.e2e]

DASHBOARD = Path(__file__).resolve().parents[2] / "charts/berth/files/grafana/berth.json"
# Grafana's variables, as a Grafana at a 1 s scrape would fill them in.
GRAFANA_VARIABLES = {"$__rate_interval": "5m", "$__interval": "1s", "$__range": "1h"}
FAST, FAILING = "mon-fast", "mon-failing"
FAST_PORT, FAILING_PORT = 8101, 8102


@pytest.fixture(scope="module")
def prometheus(cluster: LabCluster, lab: Lab) -> Iterator[LabPrometheus]:
    assert cluster.operator is not None
    targets = ScrapeTargets(
        operator=f"127.0.0.1:{cluster.operator.metrics_port}",
        agents={name: f"{lab.host(name).address}:{AGENT_PORT}" for name in lab.hosts},
        ca=lab.pki.ca.cert,
        client=lab.pki.metrics,
    )
    with LabPrometheus(lab.plan.monitoring_dir, targets, lab.plan.owner_env()) as running:
        yield running


def series(prometheus: LabPrometheus, expr: str) -> list[dict[str, Any]]:
    return prometheus.query(expr)


def grafana_expr(expr: str) -> str:
    """The panel's query as Grafana would send it, without its `or vector(0)` fallback:
    the series themselves must be there (a misspelled name would hide behind a 0)."""
    for variable, value in GRAFANA_VARIABLES.items():
        expr = expr.replace(variable, value)
    return expr.removesuffix(" or vector(0)")


def value_of(series: dict[str, Any]) -> float:
    value = float(series["value"][1])
    return -math.inf if math.isnan(value) else value


def shown(result: list[dict[str, Any]]) -> str:
    """The series of the largest value, short: its identifying labels and its value."""
    if not result:
        return "-"
    first = max(result, key=value_of)
    labels = {k: v for k, v in first["metric"].items() if k not in ("__name__", "job", "instance")}
    value = float(first["value"][1])
    number = "NaN" if math.isnan(value) else f"{value:.6g}"
    return f"{json.dumps(labels, separators=(',', ':'))} = {number}"


def test_every_alert_and_panel_returns_series_from_a_real_prometheus_after_real_moves(
    prometheus: LabPrometheus, cluster: LabCluster, lab: Lab, kubectl: Kubectl, namespace: str
) -> None:
    until(
        "Prometheus to scrape the operator and both agents",
        lambda: (
            set(prometheus.scrape_health().values()) == {"up"}
            and len(prometheus.scrape_health()) == 3
        ),
        60,
        0.5,
    )
    print(f"\n[monitoring] targets: {prometheus.scrape_health()}")
    # Prometheus's certificate reads the metrics, and nothing else, on a real agent.
    metrics = lab.pki.metrics
    agent = f"https://{lab.host('host-a').address}:{AGENT_PORT}"
    context = tls_context(lab.pki.ca.cert, metrics.cert, metrics.key)
    with httpx.Client(verify=context, trust_env=False, timeout=10) as http:
        assert http.get(f"{agent}/metrics").status_code == 200
        refused = http.get(f"{agent}/v1/repositories")
    assert refused.status_code == 403, refused.text
    print(f"[monitoring] the metrics certificate on /v1/repositories: 403 {refused.json()}")

    # A move that succeeds, over a downtime budget no move meets.
    create_pulse(kubectl, namespace, FAST, "host-a", port=FAST_PORT, downtimeBudget="1ms")
    create_pulse(kubectl, namespace, FAILING, "host-a", port=FAILING_PORT)
    wait_current(kubectl, namespace, FAST)
    wait_current(kubectl, namespace, FAILING)
    move(kubectl, namespace, FAST, "host-b")
    fast = wait_current(kubectl, namespace, FAST)["status"]["lastMigration"]
    assert fast["result"] == "Succeeded", fast
    print(f"[monitoring] {FAST}: Succeeded in {fast['downtimeSeconds']}s of downtime (budget 1ms)")

    # A move that rolls back: the target's port is held, so the restored app cannot bind.
    hold = (f"import socket, time; s = socket.socket(); s.bind(('0.0.0.0', {FAILING_PORT})); "
            "s.listen(); time.sleep(3600)")  # fmt: skip
    squatter = subprocess.Popen(
        [*lab.host("host-b").nsenter(), sys.executable, "-c", hold], stdout=subprocess.DEVNULL
    )
    try:
        time.sleep(0.5)
        move(kubectl, namespace, FAILING, "host-b")

        def ended_badly() -> dict[str, Any] | None:
            last = placement(kubectl, namespace, FAILING)["status"].get("lastMigration") or {}
            return last if last.get("result") in ("Failed", "RolledBack") else None

        failed = until(f"{FAILING}'s move to fail", ended_badly, 180, 0.5)
        print(f"[monitoring] {FAILING}: {failed['result']}: {failed.get('reason', '')[:120]}")
        # Stalled: sent to a machine that does not exist (no move), before the retry
        # that would succeed once the port is free.
        move(kubectl, namespace, FAILING, "host-nowhere")
        until(
            f"{FAILING} Stalled",
            lambda: (
                condition(placement(kubectl, namespace, FAILING), "Stalled").get("status") == "True"
            ),
            60,
            0.3,
        )
    finally:
        squatter.kill()
        squatter.wait()
    # A Machine not Ready: host-b's agent stops (its applications run on).
    host_b = lab.host("host-b")
    lab.stop_agent(host_b)
    try:
        until(
            "host-b's Machine not Ready",
            lambda: series(prometheus, 'berth_machine_ready{machine="host-b"} == 0'),
            60,
            0.5,
        )
        rules = yaml.safe_load(ALERT_RULES.read_text())["groups"][0]["rules"]
        panels = json.loads(DASHBOARD.read_text())["panels"]
        checks = [(f"alert {r['alert']}", r["expr"]) for r in rules] + [
            (f"panel {p['title']} [{t['refId']}]", grafana_expr(t["expr"]))
            for p in panels
            for t in p["targets"]
        ]
        # The moves' counters are scraped each second: a few seconds for every series.
        time.sleep(3)
        answers = {what: series(prometheus, expr) for what, expr in checks}
        width = max(len(what) for what, _ in checks)
        print("[monitoring] query check:")
        for what, _ in checks:
            print(f"  {what:<{width}}  {len(answers[what]):>2} series  {shown(answers[what])}")
        states = {r["name"]: r["state"] for r in prometheus.rules()}
        print(f"[monitoring] alert states: {states}")
    finally:
        lab.start_agent(host_b)
        move(kubectl, namespace, FAILING, "host-a")
    assert all(answers.values()), [what for what, result in answers.items() if not result]
    assert answers["alert BerthMachineNotReady"][0]["metric"]["machine"] == "host-b"
    assert answers["alert BerthPlacementStalled"][0]["metric"]["reason"] == "UnknownMachine"
    failed_alert = answers["alert BerthMigrationFailed"][0]["metric"]
    assert (failed_alert["placement"], failed_alert["target"]) == (FAILING, "host-b")
    assert answers["alert BerthDowntimeOverBudget"][0]["metric"]["placement"] == FAST
    moves = {s["metric"]["result"]: value_of(s) for s in answers["panel Moves by result [A]"]}
    assert moves["Succeeded"] > 0 and moves["RolledBack"] > 0, moves  # each result's first
    # No `for:` on these two: firing as soon as Prometheus evaluated them.
    assert states["BerthMigrationFailed"] == "firing"
    assert states["BerthDowntimeOverBudget"] == "firing"
    cluster.wait_machines_ready()
