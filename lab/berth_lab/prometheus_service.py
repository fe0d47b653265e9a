"""The lab's Prometheus, for real: Debian's `prometheus` scraping the operator's /metrics
and every lab agent's (over mutual TLS, with a metrics certificate of the lab's CA, which
agents let read /metrics only), with berth's alert rules loaded, as a cluster would run it.

It runs as a process of the lab (its OWNER_ENV, its files in the lab's monitoring dir),
so `Lab.down()` stops it and the leftover check sees it. It scrapes every second: the
lab's moves take seconds.
"""

from __future__ import annotations

import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import yaml

from berth_common.pki import CertFiles
from berth_lab import procs, services
from berth_lab.host import LabError
from berth_lab.kube import free_ports

MARKER = "prometheus.yml"  # in its command line: --config.file=DIR/prometheus.yml
PIDFILE = "prometheus.pid"
SCRAPE_INTERVAL = "1s"
REPO_ROOT = Path(__file__).resolve().parents[2]
ALERT_RULES = REPO_ROOT / "charts" / "berth" / "files" / "prometheus" / "alerts.yaml"


@dataclass(frozen=True)
class ScrapeTargets:
    operator: str  # HOST:PORT of the operator's /metrics (plain HTTP)
    agents: Mapping[str, str]  # machine -> HOST:PORT of its agent (HTTPS, mutual TLS)
    ca: Path  # the cluster CA's certificate, which signed the agents'
    client: CertFiles  # Prometheus's: `kubectl berth pki metrics`


def prometheus_config(targets: ScrapeTargets, rules: Path) -> dict[str, Any]:
    """Prometheus's whole configuration: one job for the operator, one for the agents,
    each agent labelled with its machine (its metrics do not name it)."""
    return {
        "global": {"scrape_interval": SCRAPE_INTERVAL, "evaluation_interval": SCRAPE_INTERVAL},
        "rule_files": [str(rules)],
        "scrape_configs": [
            {
                "job_name": "berth-operator",
                "static_configs": [{"targets": [targets.operator]}],
            },
            {
                "job_name": "berth-agent",
                "scheme": "https",
                "tls_config": {
                    "ca_file": str(targets.ca),
                    "cert_file": str(targets.client.cert),
                    "key_file": str(targets.client.key),
                },
                "static_configs": [
                    {"targets": [address], "labels": {"machine": machine}}
                    for machine, address in sorted(targets.agents.items())
                ],
            },
        ],
    }


def stop_prometheus(directory: Path) -> None:
    procs.kill_pidfile(directory / PIDFILE, MARKER, grace=5)


class LabPrometheus:
    def __init__(
        self,
        directory: Path,
        targets: ScrapeTargets,
        owner_env: Mapping[str, str],
        rules: Path = ALERT_RULES,
    ) -> None:
        self.directory, self.targets, self.rule_file = directory, targets, rules
        self.owner_env = dict(owner_env)
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.directory / "prometheus.log"

    def start(self, timeout: float = 60) -> LabPrometheus:
        binary = shutil.which("prometheus")
        if binary is None:
            raise LabError("prometheus is not installed (hack/install-host.sh installs it)")
        self.directory.mkdir(parents=True, exist_ok=True)
        config = self.directory / MARKER
        config.write_text(yaml.safe_dump(prometheus_config(self.targets, self.rule_file)))
        (self.port,) = free_ports(1)
        argv = [
            binary,
            f"--config.file={config}",
            f"--storage.tsdb.path={self.directory / 'data'}",
            f"--web.listen-address=127.0.0.1:{self.port}",
            "--storage.tsdb.retention.time=1d",
        ]
        proc = services.spawn(argv, self.log_path, self.directory / PIDFILE, self.owner_env)
        try:
            services.wait_answering(
                f"{self.url}/-/ready", proc, "prometheus", self.log_path, timeout
            )
        except LabError:
            self.stop()  # as a context manager's __exit__ would not
            raise
        return self

    def stop(self) -> None:
        stop_prometheus(self.directory)

    def __enter__(self) -> LabPrometheus:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()

    # --- its HTTP API ------------------------------------------------------------------------
    def _get(self, path: str, **params: str) -> Any:
        with httpx.Client(trust_env=False, timeout=10) as http:
            answer = http.get(f"{self.url}{path}", params=params).json()
        if answer.get("status") != "success":
            raise LabError(f"prometheus {path} {params}: {answer.get('error', answer)}")
        return answer["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        """An instant query's result: each series' labels ("metric") and "value"."""
        data = self._get("/api/v1/query", query=expr)
        result: list[dict[str, Any]] = data["result"] if data["resultType"] == "vector" else []
        return result

    def scrape_health(self) -> dict[str, str]:
        """Each target's job/instance and whether its last scrape succeeded ("up")."""
        targets = self._get("/api/v1/targets")["activeTargets"]
        return {
            f"{t['labels']['job']}/{t['labels'].get('machine', t['labels']['instance'])}": t[
                "health"
            ]
            for t in targets
        }

    def rules(self) -> list[dict[str, Any]]:
        """The loaded alerting rules, each with its state and active alerts."""
        groups = self._get("/api/v1/rules", type="alert")["groups"]
        return [rule for group in groups for rule in group["rules"]]
