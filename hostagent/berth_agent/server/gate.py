"""The middleware that applies access.decide to every request, before any route runs."""

from __future__ import annotations

import logging

from cryptography import x509
from fastapi.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from berth_agent.server.access import Peer, decide, identify
from berth_agent.server.peer import peer_certificate
from berth_common.agent_api.models import Problem
from berth_common.sessions import SessionGrant

audit = logging.getLogger("berth.agent.sessions")
GRANT_STATE = "session_grant"  # request.state.session_grant on an allowed session route


def grant_fields(grant: SessionGrant | None) -> dict[str, object]:
    """Who asked for what, as the audit log's structured fields."""
    if grant is None:
        return {}
    return {
        "user": grant.user,
        "groups": list(grant.groups),
        "placement": f"{grant.namespace}/{grant.placement}",
        "machine": grant.machine,
        "repository": grant.repository,
        "verb": grant.verb.value,
    }


class SessionGate:
    """machine: this agent's name; sessions_ca: None when sessions are off;
    certificates_required: refuse a request that carries no peer certificate (as served:
    one missing means the server was started without PeerCertificateProtocol)."""

    def __init__(
        self,
        app: ASGIApp,
        machine: str,
        sessions_ca: x509.Certificate | None,
        certificates_required: bool = False,
    ) -> None:
        self.app = app
        self.machine = machine
        self.sessions_ca = sessions_ca
        self.certificates_required = certificates_required

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):  # lifespan
            await self.app(scope, receive, send)
            return
        der = peer_certificate(scope)
        path: str = scope["path"]
        if der is None and self.certificates_required:
            reason = "this request carries no verified client certificate"
            await self._refuse(scope, receive, send, "request refused", reason, None)
            return
        peer = identify(der, self.sessions_ca) if der is not None else None
        decision = decide(peer, self.sessions_ca is not None, self.machine, path)
        if not decision.allowed:
            await self._refuse(
                scope, receive, send, "session refused", decision.reason, peer, decision.grant
            )
            return
        if decision.grant is not None:
            scope.setdefault("state", {})[GRANT_STATE] = decision.grant
        await self.app(scope, receive, send)

    async def _refuse(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        message: str,
        reason: str,
        peer: Peer | None,
        grant: SessionGrant | None = None,
    ) -> None:
        audit.warning(
            message,
            extra={
                "method": scope.get("method", "WEBSOCKET"),
                "path": scope["path"],
                "reason": reason,
                "peer": peer.subject if peer is not None else None,
                **grant_fields(grant),
            },
        )
        if scope["type"] == "websocket":  # closed before it is accepted: a 403
            await send({"type": "websocket.close", "code": 1008, "reason": reason[:120]})
            return
        body = Problem(code="Forbidden", message=reason).model_dump()
        await JSONResponse(body, status_code=403)(scope, receive, send)
