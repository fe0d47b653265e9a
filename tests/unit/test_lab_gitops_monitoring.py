"""The lab's git server and Prometheus configuration (pure parts): what http-backend is
told, how its answer is split, and what Prometheus scrapes with which certificate."""

from __future__ import annotations

from pathlib import Path

import pytest

from berth_common.pki import CertFiles
from berth_lab.git_server import cgi_environment, split_cgi_answer
from berth_lab.prometheus_service import ScrapeTargets, prometheus_config

pytestmark = pytest.mark.unit


def test_http_backend_gets_the_request_as_cgi_variables() -> None:
    env = cgi_environment(
        Path("/srv/git"),
        "POST",
        "/placements.git/git-upload-pack?x=1",
        {"content-type": "application/x-git-upload-pack-request", "content-length": "42",
         "git-protocol": "version=2"},
        "127.0.0.1",
    )  # fmt: skip
    assert env["GIT_PROJECT_ROOT"] == "/srv/git"
    assert (env["PATH_INFO"], env["QUERY_STRING"]) == ("/placements.git/git-upload-pack", "x=1")
    assert env["CONTENT_LENGTH"] == "42" and env["HTTP_GIT_PROTOCOL"] == "version=2"
    assert "HTTP_CONTENT_ENCODING" not in env


@pytest.mark.parametrize("separator", [b"\r\n\r\n", b"\n\n"])
def test_http_backends_answer_is_split_into_status_headers_and_body(separator: bytes) -> None:
    eol = separator[: len(separator) // 2]
    head = b"Status: 403 Forbidden" + eol + b"Content-Type: text/plain"
    status, headers, body = split_cgi_answer(head + separator + b"no\n\nmore")
    assert (status, headers, body) == (403, [("Content-Type", "text/plain")], b"no\n\nmore")
    assert split_cgi_answer(b"Content-Type: x\r\n\r\n")[0] == 200  # no Status: 200


def test_prometheus_scrapes_agents_with_the_metrics_certificate_labelled_by_machine() -> None:
    targets = ScrapeTargets(
        operator="127.0.0.1:9090",
        agents={"host-b": "10.0.0.12:7443", "host-a": "10.0.0.11:7443"},
        ca=Path("/pki/ca.crt"),
        client=CertFiles(Path("/pki/metrics.crt"), Path("/pki/metrics.key")),
    )
    config = prometheus_config(targets, Path("/chart/alerts.yaml"))
    operator, agents = config["scrape_configs"]
    assert operator["static_configs"] == [{"targets": ["127.0.0.1:9090"]}]
    assert agents["scheme"] == "https"
    assert agents["tls_config"]["cert_file"] == "/pki/metrics.crt"
    assert agents["static_configs"] == [
        {"targets": ["10.0.0.11:7443"], "labels": {"machine": "host-a"}},
        {"targets": ["10.0.0.12:7443"], "labels": {"machine": "host-b"}},
    ]
    assert config["rule_files"] == ["/chart/alerts.yaml"]


def test_the_headers_end_at_the_first_blank_line_whatever_the_pack_holds() -> None:
    answer = b"Status: 200 OK\nContent-Type: application/x-git-upload-pack-result\n\nPACK\r\n\r\nx"
    status, headers, body = split_cgi_answer(answer)
    assert status == 200 and len(headers) == 1 and body == b"PACK\r\n\r\nx"
