"""Serving the API over HTTPS with mutual TLS.

The TLS layer demands a client certificate signed by the configured CA, so a request
without one is refused during the handshake, before any handler runs.
"""

from __future__ import annotations

import logging
import ssl

import uvicorn

from berth_agent.config import AgentConfig
from berth_agent.repositories import Repositories
from berth_agent.server.app import build_app

log = logging.getLogger("berth.agent.server")


KEEP_ALIVE_SECONDS = 75


def serve(config: AgentConfig) -> None:
    for path in (config.tls.cert, config.tls.key, config.tls.client_ca):
        if not path.exists():
            raise SystemExit(f"berth-agent: TLS file {path} is missing (see --tls-* flags)")
    repos = Repositories(config)
    app = build_app(repos, config)
    log.info(
        "agent serving",
        extra={"listen": config.listen, "port": config.port, "machine": config.name},
    )
    uvicorn.run(
        app,
        host=config.listen,
        port=config.port,
        ssl_certfile=str(config.tls.cert),
        ssl_keyfile=str(config.tls.key),
        ssl_ca_certs=str(config.tls.client_ca),
        ssl_cert_reqs=ssl.CERT_REQUIRED,
        log_config=None,
        access_log=False,
        # The operator keeps one connection per agent for its heartbeats (every 10 s):
        # idle connections live longer than that, so a beat is not a TLS handshake.
        timeout_keep_alive=KEEP_ALIVE_SECONDS,
    )
