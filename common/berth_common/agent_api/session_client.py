"""A person's client of one agent's session routes (`kubectl berth logs|exec`), with a
session certificate (berth_common.sessions) instead of the cluster's.

Answers stream: log lines, or exec's frames, as the agent sends them. A call that
fails raises AgentRefused (the agent's status, code and message: 403 for a grant that
does not fit, 404, 409 for a repository not running there) or AgentUnreachable.
"""

from __future__ import annotations

import ssl
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
from pydantic import TypeAdapter

from berth_common.agent_api.client import CONNECT_TIMEOUT, _answered, _refusal
from berth_common.agent_api.errors import AgentUnreachable
from berth_common.agent_api.models import ExecExit, ExecFrame, ExecRequest

_FRAME: TypeAdapter[ExecFrame] = TypeAdapter(ExecFrame)


class SessionClient:
    def __init__(
        self, endpoint: str, ca_pem: str, cert: Path, key: Path, timeout: float = 30
    ) -> None:
        """ca_pem: the CA bundle the agent's certificate is checked with (a Machine's
        spec.caBundle); cert, key: the session certificate and its key; timeout: seconds
        to connect and for an answer to begin (a stream then waits as long as it runs)."""
        context = ssl.create_default_context(cadata=ca_pem)
        context.load_cert_chain(str(cert), str(key))
        self.endpoint = endpoint
        self._timeout = timeout
        self._http = httpx.Client(
            base_url=endpoint,
            verify=context,
            timeout=httpx.Timeout(timeout, connect=min(timeout, CONNECT_TIMEOUT)),
        )

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> SessionClient:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def _stream(self, method: str, path: str, long: bool, **kwargs: Any) -> Iterator[str]:
        """The answer's lines as they come; refusals raised before the first. long: the
        answer may be silent for long (a followed log, a command): reads are not timed."""
        timeout = httpx.Timeout(
            self._timeout,
            connect=min(self._timeout, CONNECT_TIMEOUT),
            read=None if long else self._timeout,
        )
        with (
            _answered(),
            self._http.stream(method, path, timeout=timeout, **kwargs) as response,
        ):
            if response.status_code >= 400:
                response.read()
                raise _refusal(response)
            yield from response.iter_lines()

    def logs(
        self,
        repository: str,
        container: str | None = None,
        tail: int = 100,
        follow: bool = False,
    ) -> Iterator[str]:
        """Log lines, each with Docker's timestamp (`[container] ` first for every
        container's); with follow, until the repository stops on that machine or the
        caller stops reading."""
        params: dict[str, str | int] = {"tail": tail, "follow": "true" if follow else "false"}
        if container is not None:
            params["container"] = container
        path = f"/v1/sessions/{quote(repository, safe='')}/logs"
        yield from self._stream("GET", path, follow, params=params)

    def exec(self, repository: str, argv: Sequence[str]) -> Iterator[ExecFrame]:
        """`docker ...` against the repository's own daemon: what it writes, then its
        exit (the last frame, an ExecExit)."""
        body = ExecRequest.model_construct(argv=list(argv)).model_dump(mode="json")
        path = f"/v1/sessions/{quote(repository, safe='')}/exec"
        for line in self._stream("POST", path, True, json=body):
            if not line.strip():
                continue
            frame = _FRAME.validate_json(line)
            yield frame
            if isinstance(frame, ExecExit):
                return
        raise AgentUnreachable("the agent's answer ended before the command's exit code")
