"""kubectl berth logs / exec: a repository's containers, wherever it runs now."""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from typing import TextIO

from berth_common.agent_api.errors import AgentError, AgentRefused, AgentUnreachable
from berth_common.agent_api.models import ExecExit
from berth_common.sessions import SessionVerb
from kubectl_berth.client import Berth, CLIError
from kubectl_berth.log_lines import Printed
from kubectl_berth.sessions import SessionDenied, open_session

# How long `logs -f` waits for the repository to run again after its stream ended (a
# move's freeze is seconds; a failed move's rollback, or a retry, takes longer).
FOLLOW_GAP_SECONDS = 300.0
RETRY_EVERY = 1.0
# Denials that pass by themselves during a move: frozen (running nowhere), or reported
# running on both machines until the source's inventory catches up.
PASSING_DENIALS = ("NotRunning", "Ambiguous")
ALL_LINES = 10000  # the agent's largest tail: after a move, what the gap may have written


def run_logs(
    berth: Berth,
    namespace: str,
    placement: str,
    container: str | None,
    tail: int,
    follow: bool,
    out: TextIO = sys.stdout,
    err: TextIO = sys.stderr,
    gap_seconds: float = FOLLOW_GAP_SECONDS,
) -> int:
    """Print the lines; with follow, on whichever machine the repository runs, across
    moves, each line once (log_lines.Printed)."""
    printed = Printed()
    machine: str | None = None
    waiting_since: float | None = None
    while True:
        try:
            with open_session(berth, namespace, placement, SessionVerb.LOGS) as session:
                grant = session.grant
                if machine is not None and grant.machine != machine:
                    print(f"-- {grant.repository} now runs on {grant.machine} --", file=err)
                machine, waiting_since = grant.machine, None
                with session.client as agent:
                    resumed = printed.since() is not None
                    for line in agent.logs(
                        grant.repository, container, ALL_LINES if resumed else tail, follow
                    ):
                        if printed.is_new(line):
                            print(line, file=out, flush=True)
            if not follow:
                return 0
        except SessionDenied as denied:
            if not follow or machine is None or denied.reason not in PASSING_DENIALS:
                raise
        except AgentRefused as refused:
            if not follow or machine is None or refused.status != 409:
                raise CLIError(f"the agent refused: {refused.message}") from None
        except AgentUnreachable as gone:
            if not follow or machine is None:
                where = machine or "its machine"
                raise CLIError(f"the agent on {where} did not answer: {gone}") from None
        # The stream ended: the repository stopped there (a move), or its agent went away.
        now = time.monotonic()
        if waiting_since is None:
            waiting_since = now
            print(f"-- the stream from {machine} ended; waiting for it to run again --", file=err)
        elif now - waiting_since > gap_seconds:
            raise CLIError(f"{placement} has not run anywhere for {gap_seconds:.0f}s")
        time.sleep(RETRY_EVERY)


def run_exec(
    berth: Berth,
    namespace: str,
    placement: str,
    argv: Sequence[str],
    out: TextIO = sys.stdout,
    err: TextIO = sys.stderr,
) -> int:
    """Run `docker ...` against the repository's daemon; its exit code is ours."""
    if not argv:
        raise CLIError("nothing to run: kubectl berth exec PLACEMENT -- docker ...")
    if argv[0] != "docker":
        raise CLIError(f"only docker commands run in a repository (got {argv[0]!r})")
    with open_session(berth, namespace, placement, SessionVerb.EXEC) as session:
        try:
            with session.client as agent:
                for frame in agent.exec(session.grant.repository, argv):
                    if isinstance(frame, ExecExit):
                        if frame.message:
                            print(f"-- {frame.message}", file=err)
                        return frame.exit
                    (out if frame.stream == "stdout" else err).write(frame.data)
                    (out if frame.stream == "stdout" else err).flush()
        except AgentRefused as refused:
            raise CLIError(f"the agent refused: {refused.message}") from None
        except AgentError as gone:
            raise CLIError(f"the agent on {session.grant.machine} did not answer: {gone}") from None
    raise CLIError("the command's answer ended without its exit code")
