"""A client for the agent's mTLS API, used by the operator, peers, the lab and tests."""

from __future__ import annotations

import base64
import json
import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

from berth_agent.checkpoint.postcopy import PostCopyStatus

# Agents are on the machines' own network: a connection not made in this long will not
# be. A partitioned peer (packets dropped) then fails in seconds, not after the whole
# request timeout, which matters while a migration holds the application frozen.
CONNECT_TIMEOUT = 10.0
# A freeze dumps and an up restores every page of memory kept inside the freeze: minutes
# for GiBs (4 GiB took 160 s here), which the default request timeout would cut short.
FREEZE_AND_UP_TIMEOUT = httpx.Timeout(900.0, connect=CONNECT_TIMEOUT)


class AgentAPIError(RuntimeError):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{code} ({status}): {message}")
        self.status, self.code, self.message = status, code, message


def _error(response: httpx.Response) -> AgentAPIError:
    try:
        body = response.json()
    except ValueError:
        return AgentAPIError(response.status_code, "Error", response.text)
    return AgentAPIError(
        response.status_code,
        body.get("code", "Error"),
        body.get("message") or str(body.get("detail")),
    )


class AgentClient:
    def __init__(
        self, endpoint: str, ca: Path | bytes, cert: Path, key: Path, timeout: float = 120
    ) -> None:
        """ca: a file of CA certificates, or PEM data (a Machine's caBundle)."""
        if isinstance(ca, bytes):
            context = ssl.create_default_context(cadata=ca.decode())
        else:
            context = ssl.create_default_context(cafile=str(ca))
        context.load_cert_chain(str(cert), str(key))
        self.endpoint = endpoint
        self._http = httpx.Client(
            base_url=endpoint,
            verify=context,
            timeout=httpx.Timeout(timeout, connect=min(timeout, CONNECT_TIMEOUT)),
        )

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> AgentClient:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self._http.request(method, path, **kwargs)
        if response.status_code >= 400:
            raise _error(response)
        return response.json()

    def healthz(self) -> dict[str, Any]:
        result: dict[str, Any] = self._call("GET", "/healthz")
        return result

    def repositories(self) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self._call("GET", "/v1/repositories")
        return result

    def status(self, ref: str) -> dict[str, Any]:
        result: dict[str, Any] = self._call("GET", f"/v1/repositories/{ref}")
        return result

    def create(
        self,
        name: str,
        size: str,
        *,
        template: str | None = None,
        services: dict[str, Any] | None = None,
        guid: str | None = None,
        key: bytes | None = None,
    ) -> dict[str, Any]:
        body: dict[str, Any] = {
            "name": name,
            "size": size,
            "template": template,
            "services": services,
            "guid": guid,
        }
        if key is not None:
            body["key"] = base64.b64encode(key).decode()
        result: dict[str, Any] = self._call("POST", "/v1/repositories", json=body)
        return result

    def up(
        self,
        ref: str,
        key: bytes | None = None,
        *,
        wait_answer: float | None = None,
        force: bool = False,
    ) -> dict[str, Any]:
        body: dict[str, Any] = {"wait_answer": wait_answer, "force": force}
        if key is not None:
            body["key"] = base64.b64encode(key).decode()
        result: dict[str, Any] = self._call(
            "POST", f"/v1/repositories/{ref}/up", json=body, timeout=FREEZE_AND_UP_TIMEOUT
        )
        return result

    def freeze(
        self,
        ref: str,
        migration_id: str,
        *,
        checkpoint: bool = True,
        memory: str = "freeze",
        page_server_address: str | None = None,
        stop_grace: int | None = None,
    ) -> dict[str, Any]:
        result: dict[str, Any] = self._call(
            "POST",
            f"/v1/repositories/{ref}/freeze",
            json={
                "migration_id": migration_id,
                "checkpoint": checkpoint,
                "memory": memory,
                "page_server_address": page_server_address,
                "stop_grace": stop_grace,
            },
            timeout=FREEZE_AND_UP_TIMEOUT,
        )
        return result

    def postcopy(self, ref: str, migration_id: str) -> list[PostCopyStatus]:
        """Each container's post-copy of the migration on this host."""
        result = self._call("GET", f"/v1/repositories/{ref}/postcopy/{migration_id}")
        return [PostCopyStatus.model_validate(s) for s in result["containers"]]

    def resume(self, ref: str, migration_id: str) -> dict[str, Any]:
        result: dict[str, Any] = self._call(
            "POST", f"/v1/repositories/{ref}/resume", json={"migration_id": migration_id}
        )
        return result

    def logs(self, ref: str, service: str, tail: int = 100) -> list[str]:
        result: dict[str, Any] = self._call(
            "GET", f"/v1/repositories/{ref}/services/{service}/logs", params={"tail": tail}
        )
        lines: list[str] = result["lines"]
        return lines

    def down(self, ref: str, *, moved_to: str | None = None) -> dict[str, Any]:
        result: dict[str, Any] = self._call(
            "POST", f"/v1/repositories/{ref}/down", json={"moved_to": moved_to}
        )
        return result

    # --- transfers: the receiving agent's side -------------------------------------------
    def begin_transfer(
        self, transfer_id: str, token: str, record: dict[str, Any], offer_base_root: str | None
    ) -> dict[str, Any]:
        result: dict[str, Any] = self._call(
            "POST",
            "/v1/transfers",
            json={
                "transfer_id": transfer_id,
                "token": token,
                "record": record,
                "offer_base_root": offer_base_root,
            },
        )
        return result

    def transfer_status(self, transfer_id: str) -> dict[str, Any]:
        result: dict[str, Any] = self._call("GET", f"/v1/transfers/{transfer_id}")
        return result

    def send_frames(
        self, transfer_id: str, token: str, from_block: int, frames: Iterator[bytes]
    ) -> dict[str, Any]:
        result: dict[str, Any] = self._call(
            "PUT",
            f"/v1/transfers/{transfer_id}/data",
            params={"from_block": from_block},
            headers={"X-Berth-Token": token, "Content-Type": "application/octet-stream"},
            content=frames,
        )
        return result

    def commit_transfer(self, transfer_id: str, token: str, root: str) -> dict[str, Any]:
        result: dict[str, Any] = self._call(
            "POST", f"/v1/transfers/{transfer_id}/commit", json={"token": token, "root": root}
        )
        return result

    def abort_transfer(self, transfer_id: str, timeout: float | None = None) -> None:
        """timeout: seconds for this call alone (default: the client's)."""
        options = {} if timeout is None else {"timeout": timeout}
        self._call("DELETE", f"/v1/transfers/{transfer_id}", **options)

    # --- transfers: asking the sending agent to push ------------------------------------
    def push(
        self,
        ref: str,
        target: str,
        token: str,
        transfer_id: str,
        *,
        compress: bool = False,
        bandwidth: float | None = None,
        faults: dict[str, int] | None = None,
    ) -> Iterator[dict[str, Any]]:
        """Progress events as the source agent reports them; the last one is the result."""
        body = {
            "target": target,
            "token": token,
            "transfer_id": transfer_id,
            "compress": compress,
            "bandwidth": bandwidth,
            "faults": faults or {},
        }
        with self._http.stream(
            "POST",
            f"/v1/repositories/{ref}/push",
            json=body,
            timeout=httpx.Timeout(None, connect=CONNECT_TIMEOUT),  # a push streams for long
        ) as response:
            if response.status_code >= 400:
                response.read()
                raise _error(response)
            for line in response.iter_lines():
                if line.strip():
                    event: dict[str, Any] = json.loads(line)
                    if event.get("event") == "error":
                        raise AgentAPIError(
                            event.get("status", 500),
                            event.get("code", "Error"),
                            event.get("message", ""),
                        )
                    yield event

    def delete(self, ref: str, confirm: str) -> dict[str, Any]:
        result: dict[str, Any] = self._call(
            "DELETE", f"/v1/repositories/{ref}", params={"confirm": confirm}
        )
        return result
