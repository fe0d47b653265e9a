"""Refusals: the errors the agent answers its callers with, each an HTTP status and a
stable code (a caller sees them as berth_common.agent_api.errors.AgentRefused)."""

from __future__ import annotations


class Refusal(Exception):
    status = 500
    code = "Internal"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidRequest(Refusal):
    status = 400
    code = "Invalid"


class Forbidden(Refusal):
    """The caller's certificate does not open this route."""

    status = 403
    code = "Forbidden"


class NotFound(Refusal):
    status = 404
    code = "NotFound"


class Conflict(Refusal):
    status = 409
    code = "Conflict"


class CorruptData(Refusal):
    """Data that failed its checksum: nothing of it was applied; send it again."""

    status = 422
    code = "Corrupt"


class Unsupported(Refusal):
    """The host lacks a feature the request needs (dm-crypt, reflink, ...)."""

    status = 501
    code = "Unsupported"


class InsufficientSpace(Refusal):
    status = 507
    code = "InsufficientSpace"
