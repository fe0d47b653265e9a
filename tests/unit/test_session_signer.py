"""The operator's session signer: its decision (pure), the CSR reading, and one
reconcile through a recording fake of the Kubernetes calls (SessionsAPI)."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from berth_common.agent_api.models import RepositoryStatus
from berth_common.pki import CertFiles, create_ca
from berth_common.sessions import (
    SIGNER_NAME,
    SessionError,
    SessionRequest,
    SessionVerb,
    build_request,
    grant_of,
    issued_by,
    read_request,
)
from berth_operator.controller.cache import ObjectCache
from berth_operator.sessions.csr import CSRState, read_csr
from berth_operator.sessions.decide import (
    Deny,
    Requester,
    Review,
    Sign,
    Whereabouts,
    decide_session,
    whereabouts,
)
from berth_operator.sessions.signer import SessionsCA, SessionSigner, csr_name
from wire_fakes import container, repository

pytestmark = pytest.mark.unit
REQUEST = SessionRequest("team", "pulse", SessionVerb.EXEC)
ALICE = Requester("alice", groups=("devs", "system:authenticated"))


def entry(
    mounted: bool = True, moved_to: str | None = None, state: str = "running"
) -> RepositoryStatus:
    return repository(
        "pulse", mounted=mounted, running=mounted, moved_to=moved_to,
        containers=[container("heartbeat_app", state)],
    )  # fmt: skip


def test_a_person_without_the_right_is_denied_before_anything_about_the_placement() -> None:
    denied = decide_session(
        REQUEST, ALICE, Review(False, "no RBAC policy matched"), Whereabouts(False)
    )
    assert denied == Deny(
        "Forbidden",
        'user "alice" cannot create resource "repositoryplacements/exec" "pulse" in namespace '
        '"team": no RBAC policy matched',
    )


@pytest.mark.parametrize(
    ("where", "reason"),
    [
        (Whereabouts(False), "NotFound"),
        (Whereabouts(True, "pulse", (), moving="Cutover"), "NotRunning"),
        (Whereabouts(True, "pulse", ("host-a", "host-b")), "Ambiguous"),
    ],
)
def test_a_session_is_only_for_the_one_machine_it_runs_on(where: Whereabouts, reason: str) -> None:
    decision = decide_session(REQUEST, ALICE, Review(True), where)
    assert isinstance(decision, Deny) and decision.reason == reason


def test_the_grant_names_the_machine_repository_verb_and_person() -> None:
    decision = decide_session(REQUEST, ALICE, Review(True), Whereabouts(True, "pulse", ("host-b",)))
    assert isinstance(decision, Sign)
    grant = decision.grant
    assert (grant.machine, grant.repository, grant.verb, grant.user) == (
        "host-b",
        "pulse",
        SessionVerb.EXEC,
        "alice",
    )
    assert grant.allows("host-b", "pulse", SessionVerb.EXEC)
    assert not grant.allows("host-a", "pulse", SessionVerb.EXEC)
    assert not grant.allows("host-b", "pulse", SessionVerb.LOGS)


def test_whereabouts_counts_only_running_copies_that_are_not_stale() -> None:
    placement = {"spec": {"repository": "pulse"}, "status": {"migration": {"phase": "Finalizing"}}}
    holders = {
        "host-a": entry(moved_to="host-b"),
        "host-b": entry(),
        "host-c": entry(mounted=False),
    }
    where = whereabouts(placement, holders)
    assert where.running_on == ("host-b",) and where.moving == "Finalizing"
    assert whereabouts(placement, {"host-b": entry(state="exited")}).running_on == ()
    assert whereabouts(None, holders) == Whereabouts(False)


def test_a_request_must_name_exactly_one_session() -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    _, request = read_request(build_request(key, REQUEST))
    assert request == REQUEST
    with pytest.raises(SessionError, match="not a PEM"):
        read_request(b"garbage")
    with pytest.raises(SessionError, match="unknown session verb"):
        SessionRequest.from_uri("berth://session-request/team/pulse/shell")
    with pytest.raises(SessionError, match="not a valid name"):
        SessionRequest.from_uri("berth://session-request/team/Pulse!/logs")


class RecordingAPI:
    """A fake of SessionsAPI (unit layer only): answers as the API server would, and
    records what was written."""

    def __init__(self, allowed: bool) -> None:
        self.allowed, self.written = allowed, []  # type: ignore[var-annotated]

    def review(self, requester: Requester, request: SessionRequest) -> Review:
        return Review(self.allowed, "" if self.allowed else "no RBAC policy matched")

    def answer(self, body: dict[str, Any]) -> dict[str, Any]:
        self.written.append(("approval", body))
        return {**body, "metadata": {**body["metadata"], "resourceVersion": "2"}}

    def issue(self, body: dict[str, Any]) -> dict[str, Any]:
        self.written.append(("status", body))
        return {**body, "metadata": {**body["metadata"], "resourceVersion": "3"}}


class Holders:
    def holders(self, repository: str) -> dict[str, RepositoryStatus]:
        return {"host-b": entry()} if repository == "pulse" else {}


def csr_object(
    request: SessionRequest, conditions: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    pem = build_request(ec.generate_private_key(ec.SECP256R1()), request)
    return {
        "apiVersion": "certificates.k8s.io/v1", "kind": "CertificateSigningRequest",
        "metadata": {"name": "berth-exec-pulse-x", "resourceVersion": "1"},
        "spec": {"signerName": SIGNER_NAME, "username": "alice", "groups": ["devs"],
                 "request": base64.b64encode(pem).decode()},
        "status": {"conditions": conditions or []},
    }  # fmt: skip


def signer(
    tmp_path: Path, api: RecordingAPI, obj: dict[str, Any]
) -> tuple[SessionSigner, CertFiles]:
    ca = create_ca(CertFiles(tmp_path / "s.crt", tmp_path / "s.key"), cn="sessions")
    (tmp_path / "tls.crt").write_bytes(ca.cert.read_bytes())
    (tmp_path / "tls.key").write_bytes(ca.key.read_bytes())
    csrs: ObjectCache[str] = ObjectCache(csr_name, {})
    csrs.store(obj)
    placements: ObjectCache[tuple[str, str]] = ObjectCache(
        lambda o: (o["metadata"]["namespace"], o["metadata"]["name"]), {}
    )
    placements.store({"metadata": {"namespace": "team", "name": "pulse"},
                      "spec": {"repository": "pulse"}, "status": {}})  # fmt: skip
    return SessionSigner(api, csrs, placements, Holders(), SessionsCA.load(tmp_path)), ca  # type: ignore[arg-type]


def test_an_allowed_request_is_approved_then_signed_for_where_it_runs(tmp_path: Path) -> None:
    api = RecordingAPI(allowed=True)
    sessions, ca = signer(tmp_path, api, csr_object(REQUEST))
    sessions.reconcile("berth-exec-pulse-x")
    (kind1, approved), (kind2, signed) = api.written
    assert kind1 == "approval" and approved["status"]["conditions"][-1]["type"] == "Approved"
    assert kind2 == "status"
    cert = x509.load_pem_x509_certificate(base64.b64decode(signed["status"]["certificate"]))
    assert issued_by(cert, x509.load_pem_x509_certificate(ca.cert.read_bytes()))
    grant = grant_of(cert)
    assert (grant.machine, grant.repository, grant.verb, grant.user, grant.groups) == (
        "host-b",
        "pulse",
        SessionVerb.EXEC,
        "alice",
        ("devs",),
    )
    assert read_csr(sessions.csrs.get("berth-exec-pulse-x") or {}).state is CSRState.ISSUED
    sessions.reconcile("berth-exec-pulse-x")  # answered: never again
    assert len(api.written) == 2


def test_a_refused_request_is_denied_with_the_reason_and_never_signed(tmp_path: Path) -> None:
    api = RecordingAPI(allowed=False)
    sessions, _ = signer(tmp_path, api, csr_object(REQUEST))
    sessions.reconcile("berth-exec-pulse-x")
    ((kind, denied),) = api.written
    condition = denied["status"]["conditions"][-1]
    assert kind == "approval" and condition["type"] == "Denied"
    assert condition["reason"] == "Forbidden" and "cannot create" in condition["message"]
    assert "certificate" not in denied["status"]


def test_approval_by_someone_else_does_not_skip_the_review(tmp_path: Path) -> None:
    approved = [{"type": "Approved", "status": "True", "reason": "kubectl"}]
    api = RecordingAPI(allowed=False)
    sessions, _ = signer(tmp_path, api, csr_object(REQUEST, approved))
    sessions.reconcile("berth-exec-pulse-x")
    ((kind, failed),) = api.written
    assert kind == "status" and failed["status"]["conditions"][-1]["type"] == "Failed"
    assert "certificate" not in failed["status"]
