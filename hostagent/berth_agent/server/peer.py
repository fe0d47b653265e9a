"""Each request learns the client certificate its TLS connection was verified with.

The ASGI TLS extension puts it in scope["extensions"]["tls"]; uvicorn does not fill
that in, so the agent serves with PeerCertificateProtocol, which does.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn._types import ASGI3Application, ASGIReceiveCallable, ASGISendCallable, Scope
from uvicorn.protocols.http.h11_impl import H11Protocol

TLS_EXTENSION = "tls"
CLIENT_CERT = "client_cert"  # DER bytes


def with_peer_certificate(app: ASGI3Application, der: bytes | None) -> ASGI3Application:
    """app, with every request's scope naming der as its client certificate."""
    if der is None:
        return app

    async def peer_app(scope: Scope, receive: ASGIReceiveCallable, send: ASGISendCallable) -> None:
        if scope["type"] != "lifespan":
            # Each request's scope is a new dict (the protocol makes it): no copy needed.
            scope.setdefault("extensions", {})[TLS_EXTENSION] = {CLIENT_CERT: der}
        await app(scope, receive, send)

    return peer_app


def peer_certificate(scope: Any) -> bytes | None:
    """The DER client certificate with_peer_certificate put in the scope, if any."""
    tls = (scope.get("extensions") or {}).get(TLS_EXTENSION) or {}
    der = tls.get(CLIENT_CERT)
    return der if isinstance(der, bytes) else None


class PeerCertificateProtocol(H11Protocol):
    """uvicorn's h11 protocol, one instance per connection. Its requests all run
    self.app, so wrapping that once the handshake is done gives each request the
    connection's certificate (h11 always: httptools' protocol runs the app differently)."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        ssl_object = transport.get_extra_info("ssl_object")
        der = ssl_object.getpeercert(binary_form=True) if ssl_object is not None else None
        self.app = with_peer_certificate(self.app, der)
