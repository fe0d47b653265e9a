"""Serving the API over HTTPS with mutual TLS.

The TLS layer demands a client certificate signed by the cluster CA or, where sessions
are on, the sessions CA, so a request without one is refused during the handshake,
before any handler runs. Which routes each may call is the app's to decide (gate.py).
"""

from __future__ import annotations

import logging
import os
import ssl
from pathlib import Path

import uvicorn
from starlette.types import ASGIApp

from berth_agent.config import AgentConfig
from berth_agent.repositories import Repositories
from berth_agent.server.app import build_app
from berth_agent.server.peer import PeerCertificateProtocol

log = logging.getLogger("berth.agent.server")


KEEP_ALIVE_SECONDS = 75
CLIENT_CAS = "client-cas.pem"


def client_cas(config: AgentConfig) -> Path:
    """The CAs whose certificates the TLS layer accepts: the cluster CA, and the sessions
    CA when set (together in one file under run_dir, written anew at each start)."""
    if config.tls.session_ca is None:
        return config.tls.client_ca
    pems = [config.tls.client_ca.read_text(), config.tls.session_ca.read_text()]
    if pems[0].strip() == pems[1].strip():
        # Every certificate of that CA would read as a session's: the operator's too.
        raise SystemExit("berth-agent: tls.session_ca must be a CA of its own, not client_ca")
    config.run_dir.mkdir(parents=True, exist_ok=True)
    bundle = config.run_dir / CLIENT_CAS
    staged = bundle.with_suffix(".tmp")
    staged.unlink(missing_ok=True)
    # Whoever could add a CA to it could call the agent: only its owner may write it.
    fd = os.open(staged, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write("".join(pem if pem.endswith("\n") else pem + "\n" for pem in pems))
    os.replace(staged, bundle)
    return bundle


def server_config(config: AgentConfig, app: ASGIApp) -> uvicorn.Config:
    """How the agent serves app: over mutual TLS, each request told its client certificate."""
    return uvicorn.Config(
        app,
        host=config.listen,
        port=config.port,
        ssl_certfile=str(config.tls.cert),
        ssl_keyfile=str(config.tls.key),
        ssl_ca_certs=str(client_cas(config)),
        ssl_cert_reqs=ssl.CERT_REQUIRED,
        http=PeerCertificateProtocol,  # the app learns each request's client certificate
        log_config=None,
        access_log=False,
        # The operator keeps one connection per agent for its heartbeats (every 10 s):
        # idle connections live longer than that, so a beat is not a TLS handshake.
        timeout_keep_alive=KEEP_ALIVE_SECONDS,
    )


def serve(config: AgentConfig) -> None:
    tls = config.tls
    for path in (tls.cert, tls.key, tls.client_ca, *([tls.session_ca] if tls.session_ca else [])):
        if not path.exists():
            raise SystemExit(f"berth-agent: TLS file {path} is missing (see --tls-* flags)")
    repos = Repositories(config)
    app = build_app(repos, config, certificates_required=True)
    log.info(
        "agent serving",
        extra={
            "listen": config.listen,
            "port": config.port,
            "machine": config.name,
            "sessions": tls.session_ca is not None,
        },
    )
    server = uvicorn.Server(server_config(config, app))
    server.run()
    if not server.started:
        raise SystemExit("berth-agent: the API did not start (its log says why)")
