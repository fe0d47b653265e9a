"""How a call to an agent fails, as AgentClient raises it: one family, two kinds.

- AgentUnreachable: no answer came (the connection, TLS, a timeout, or the answer broke
  off). The agent may not have seen the request, or may have done it: a caller that must
  know asks again once it answers.
- AgentRefused: the agent answered with an HTTP error (its status, and the code and
  message of its body), or a push's stream ended with an error line. It did not do it.

An answer that arrived whole but does not match the contract (models.py) is neither: it
raises pydantic's ValidationError (a ValueError), as a bug on one side or the other.
"""

from __future__ import annotations


class AgentError(Exception):
    """A call to an agent failed."""

    message: str


class AgentUnreachable(AgentError):
    """The agent did not answer. str() is the transport's own message; the transport's
    exception is the __cause__."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class AgentRefused(AgentError):
    """The agent answered with an error: HTTP status, the error's code, its message."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{code} ({status}): {message}")
        self.status, self.code, self.message = status, code, message


def describe(err: BaseException) -> str:
    """`Kind: message` for a status condition or a log: an unreachable agent by what went
    wrong underneath (ConnectError, ReadTimeout, ...), anything else by its own class."""
    cause = err.__cause__ if isinstance(err, AgentUnreachable) else None
    return f"{type(cause or err).__name__}: {err}"
