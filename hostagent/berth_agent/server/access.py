"""Who may call which route: the decision alone, from the peer's certificate and the path.

The TLS layer trusts two CAs: the cluster's (the operator and peer agents) and, where
configured, the sessions CA (people, through `kubectl berth logs|exec`). A session
certificate opens its own grant's session route and nothing else; a cluster
certificate opens every other route and no session route, unless it is a metrics
certificate (organization `berth:metrics`, Prometheus's), which opens /metrics and
/healthz only.
"""

from __future__ import annotations

import datetime as dt
import functools
import re
from dataclasses import dataclass

from cryptography import x509
from cryptography.x509.oid import NameOID

from berth_common.pki import METRICS_ORGANIZATION
from berth_common.sessions import SessionError, SessionGrant, SessionVerb, grant_of, issued_by

SESSIONS_PREFIX = "/v1/sessions"
METRICS_ROUTES = frozenset({"/metrics", "/healthz"})  # all a metrics certificate opens
_SESSION_ROUTE = re.compile(r"^/v1/sessions/(?P<repository>[^/]+)/(?P<verb>[^/]+)$")
NEEDS_SESSION_CERTIFICATE = "session routes need a session certificate from `kubectl berth`"
SESSIONS_DISABLED = "sessions are not enabled on this agent (tls.session_ca)"


@dataclass(frozen=True)
class SessionRoute:
    repository: str
    verb: SessionVerb | None  # None: not a verb sessions have


def session_route(path: str) -> SessionRoute | None:
    """The repository and verb a path under /v1/sessions names; None for other paths."""
    if path != SESSIONS_PREFIX and not path.startswith(SESSIONS_PREFIX + "/"):
        return None
    match = _SESSION_ROUTE.match(path)
    if match is None:
        return SessionRoute("", None)
    verbs = {v.value: v for v in SessionVerb}
    return SessionRoute(match["repository"], verbs.get(match["verb"]))


@dataclass(frozen=True)
class Peer:
    """A verified client certificate: a session's (with its grant) or the cluster CA's."""

    subject: str
    session: bool = False
    metrics_only: bool = False  # the cluster CA's, with pki.METRICS_ORGANIZATION: Prometheus
    grant: SessionGrant | None = None  # None on a session certificate: malformed
    problem: str = ""  # why a session certificate's grant could not be read
    expires: dt.datetime | None = None


@functools.lru_cache(maxsize=256)
def identify(der: bytes, sessions_ca: x509.Certificate | None) -> Peer:
    """What the peer's certificate is. Cached: a connection sends the same one with
    every request (the operator's heartbeat every 10 s), and this verifies a signature."""
    cert = x509.load_der_x509_certificate(der)
    subject = cert.subject.rfc4514_string()
    if sessions_ca is None or not issued_by(cert, sessions_ca):
        organizations = cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)
        metrics = any(o.value == METRICS_ORGANIZATION for o in organizations)
        return Peer(subject, metrics_only=metrics)
    try:
        grant = grant_of(cert)
    except SessionError as err:
        return Peer(subject, session=True, problem=str(err), expires=cert.not_valid_after_utc)
    return Peer(subject, session=True, grant=grant, expires=cert.not_valid_after_utc)


@dataclass(frozen=True)
class Decision:
    allowed: bool
    reason: str = ""  # why not
    grant: SessionGrant | None = None  # on an allowed session route


def _refused(reason: str, grant: SessionGrant | None = None) -> Decision:
    return Decision(False, reason, grant)


def decide(
    peer: Peer | None,
    sessions_enabled: bool,
    machine: str,
    path: str,
    now: dt.datetime | None = None,
) -> Decision:
    """Whether peer may call path on this machine. peer None: the request carries no
    certificate (the app run without uvicorn's TLS, as in unit tests): only the
    routes that are not session routes, as before sessions existed."""
    if peer is not None and peer.metrics_only and path not in METRICS_ROUTES:
        return _refused(f"a metrics certificate opens only /metrics and /healthz, not {path}")
    route = session_route(path)
    if route is None:
        if peer is not None and peer.session:
            return _refused(
                "a session certificate opens only its own session route "
                f"({SESSIONS_PREFIX}/REPOSITORY/logs|exec), not {path}",
                peer.grant,
            )
        return Decision(True)
    if not sessions_enabled:
        return _refused(SESSIONS_DISABLED)
    if peer is None or not peer.session:
        return _refused(NEEDS_SESSION_CERTIFICATE)
    grant = peer.grant
    if grant is None:
        return _refused(f"this session certificate carries no usable grant: {peer.problem}")
    now = now or dt.datetime.now(dt.UTC)
    # The handshake checked the dates; a kept-alive connection can outlive them.
    if peer.expires is not None and now > peer.expires:
        return _refused(f"this session certificate expired at {peer.expires:%Y-%m-%dT%H:%M:%SZ}")
    if route.verb is None or not grant.allows(machine, route.repository, route.verb):
        asked = route.verb.value if route.verb else "this route"
        where = "" if grant.machine == machine else f" at {machine}"
        return _refused(
            f"this session certificate grants {grant.verb.value} on {grant.repository} at "
            f"{grant.machine}, not {asked} on {route.repository or '(none)'}{where}",
            grant,
        )
    return Decision(True, grant=grant)
