"""Errors the agent reports to its callers, each with an HTTP status and a stable code."""

from __future__ import annotations


class AgentError(Exception):
    status = 500
    code = "Internal"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidRequest(AgentError):
    status = 400
    code = "Invalid"


class NotFound(AgentError):
    status = 404
    code = "NotFound"


class Conflict(AgentError):
    status = 409
    code = "Conflict"


class CorruptData(AgentError):
    """Data that failed its checksum: nothing of it was applied; send it again."""

    status = 422
    code = "Corrupt"


class Unsupported(AgentError):
    """The host lacks a feature the request needs (dm-crypt, reflink, ...)."""

    status = 501
    code = "Unsupported"


class InsufficientSpace(AgentError):
    status = 507
    code = "InsufficientSpace"
