"""The agent's API under attack: expired certificates, misused transfer tokens, fuzzed
requests, and secrets that must never be echoed or logged."""

from __future__ import annotations

import base64
import datetime as dt
import string
import urllib.parse
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from berth_common import tokens
from berth_common.agent_api.client import AgentClient
from berth_common.agent_api.errors import AgentRefused, AgentUnreachable
from berth_common.pki import CertFiles
from berth_lab import Lab
from berth_lab.agents import agent_endpoint
from faults.workload import PEM_IN_BASE64

pytestmark = pytest.mark.faults
REPO = "sec-target"


def expired_certificate(ca: CertFiles, out: Path) -> CertFiles:
    """A client certificate from the right CA, and the right name, that expired."""
    ca_key = serialization.load_pem_private_key(ca.key.read_bytes(), password=None)
    assert isinstance(ca_key, ec.EllipticCurvePrivateKey)
    ca_cert = x509.load_pem_x509_certificate(ca.cert.read_bytes())
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "berth-operator")]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=30))
        .not_valid_after(now - dt.timedelta(days=1))
        .sign(ca_key, hashes.SHA256())
    )
    files = CertFiles(out / "expired.crt", out / "expired.key")
    files.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    files.key.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return files


def test_an_expired_client_certificate_is_refused(lab: Lab, tmp_path: Path) -> None:
    expired = expired_certificate(lab.pki.ca, tmp_path)
    client = AgentClient(
        agent_endpoint(lab.host("a")), lab.pki.ca.cert, expired.cert, expired.key, timeout=5
    )
    with pytest.raises(AgentUnreachable):
        client.healthz()
    client.close()


# --- transfer tokens ----------------------------------------------------------------------
@pytest.fixture(scope="module")
def repo(lab: Lab) -> Iterator[tuple[str, str]]:
    with lab.agent("a") as a:
        guid = a.create(REPO, "1G").guid
    yield REPO, guid
    with lab.agent("a") as a:
        a.delete(REPO, confirm=REPO)


def push_with(lab: Lab, token: str, tid: str) -> str:
    """Push REPO from host-a to host-b with this token; the refusal's message."""
    with lab.agent("a") as a, pytest.raises(AgentRefused) as refused:
        list(a.push(REPO, agent_endpoint(lab.host("b")), token, tid))
    with lab.agent("b") as b:
        assert REPO not in [r.name for r in b.repositories()], "an image was installed"
    return refused.value.message


def test_transfer_tokens_are_scoped_and_expire(lab: Lab, repo: tuple[str, str]) -> None:
    _, guid = repo
    signer = lab.pki.client
    tid = f"t-{uuid.uuid4().hex[:10]}"

    def issue(transfer: str, repository: str, target: str, **kw: Any) -> str:
        return tokens.issue(transfer, repository, "host-a", target, kw.pop("by", signer), **kw)

    good = issue(tid, guid, "host-b")
    cases = {
        "replayed for another transfer": issue("t-spent", guid, "host-b"),
        "for another repository": issue(tid, str(uuid.uuid4()), "host-b"),
        "for another target": issue(tid, guid, "host-c"),
        "expired": issue(tid, guid, "host-b", ttl=-1),
        "signed by the target itself": issue(tid, guid, "host-b", by=lab.pki.host("host-b")),
        "forged (another token's signature)": good.rsplit(".", 1)[0]
        + "."
        + issue("t-other", guid, "host-b").rsplit(".", 1)[1],
    }
    for case, token in cases.items():
        message = push_with(lab, token, tid)
        assert "token" in message, f"{case}: {message}"
        assert token not in message and PEM_IN_BASE64 not in message, f"{case} echoed the token"
    # The right token works, so each refusal above was the token's doing; afterwards the
    # same token, replayed for a new transfer, is refused like any other.
    with lab.agent("a") as a:
        events = list(a.push(REPO, agent_endpoint(lab.host("b")), good, tid))
    assert events[-1].event == "result", events[-1]
    with lab.agent("b") as b:
        b.delete(REPO, confirm=REPO)
    assert "token" in push_with(lab, good, f"t-{uuid.uuid4().hex[:10]}")


# --- fuzzing ------------------------------------------------------------------------------
NASTY = st.sampled_from(
    ["../etc", "..", "a/../../b", "$(reboot)", "`id`", "a;rm -rf /", "a|b", "a b", "-rf",
     "\x00", "é", "a" * 64, "a" * 5000, "%2e%2e", "\\..\\", "${IFS}", "*", "~root", ""]
)  # fmt: skip
NAMES = st.one_of(NASTY, st.text(alphabet=string.printable, max_size=80), st.integers())
SIZES = st.one_of(
    st.sampled_from(["-1G", "0G", "1e9", "99999999999T", "1G;id", "", " 1G", "1g", "1.5G"]),
    st.text(max_size=12),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.none(),
)


def datastore_listing(lab: Lab) -> set[str]:
    root = lab.host("a").plan.datastore_mount
    return {str(p.relative_to(root)) for p in root.rglob("*") if "transfers" not in p.parts}


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(name=NAMES, size=SIZES, extra=st.dictionaries(st.text(max_size=8), st.text(max_size=8)))
def test_fuzzed_create_requests_are_refused_cleanly(
    lab: Lab, name: Any, size: Any, extra: dict[str, str]
) -> None:
    before = datastore_listing(lab)
    with lab.agent("a") as agent:
        body = {**extra, "name": name, "size": size}
        answer = agent._http.post("/v1/repositories", json=body)
        assert answer.status_code < 500, answer.text
        if answer.status_code == 201:  # a valid request by chance: undo it
            agent.delete(str(name), confirm=str(name))
            return
        assert answer.json()["message"], "a refusal must say why"
    assert datastore_listing(lab) == before, "a refused request changed the datastore"


REFS = st.one_of(NASTY, st.text(alphabet=string.ascii_letters + "./-_%;$", max_size=40))


@settings(
    max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    ref=REFS, verb=st.sampled_from(["status", "up", "down", "freeze", "resume", "delete", "logs"])
)
def test_fuzzed_repository_references_are_refused_cleanly(lab: Lab, ref: str, verb: str) -> None:
    before = datastore_listing(lab)
    quoted = "/v1/repositories/" + urllib.parse.quote(ref, safe="")
    method, path, body = {
        "status": ("GET", "", None),
        "up": ("POST", "/up", {}),
        "down": ("POST", "/down", {}),
        "freeze": ("POST", "/freeze", {"migration_id": "m-fuzz"}),
        "resume": ("POST", "/resume", {"migration_id": "m-fuzz"}),
        "delete": ("DELETE", "?confirm=" + urllib.parse.quote(ref, safe=""), None),
        "logs": ("GET", "/services/pulse/logs", None),
    }[verb]
    with lab.agent("a") as agent:
        answer = agent._http.request(method, quoted + path, json=body)
    assert answer.status_code < 500, f"{verb} {ref!r}: {answer.status_code} {answer.text}"
    # Refused, or redirected ("" names the collection): never acted on.
    assert answer.status_code >= 300 or ref == REPO, f"{verb} {ref!r} was accepted"
    assert datastore_listing(lab) == before


# --- secrets ------------------------------------------------------------------------------
def test_keys_and_tokens_never_reach_answers_or_logs(lab: Lab, repo: tuple[str, str]) -> None:
    key = base64.b64encode(b"berth-test-luks-key-" + uuid.uuid4().hex.encode()).decode()
    with lab.agent("a") as agent:
        answers = [
            agent._http.post("/v1/repositories", json={"name": "enc", "size": "1G", "key": key}),
            agent._http.post("/v1/repositories", json={"size": "1G", "key": key}),  # no name
            agent._http.post("/v1/repositories", json={"name": 5, "size": "1G", "key": [key]}),
            agent._http.post(f"/v1/repositories/{REPO}/up", json={"key": key, "wait_answer": -1}),
        ]
    for answer in answers:  # 501: this kernel has no dm-crypt; refused all the same
        assert answer.status_code in (400, 404, 501) and key not in answer.text, answer.text
    with lab.agent("a") as agent:
        if "enc" in [r.name for r in agent.repositories()]:
            agent.delete("enc", confirm="enc")
    for host in lab.hosts.values():
        log = (host.plan.state_dir / "agent.log").read_text(errors="replace")
        assert key not in log, f"{host.name}'s agent logged a LUKS key"
        assert PEM_IN_BASE64 not in log, f"{host.name}'s agent logged a transfer token"
