"""A session's `exec`: the docker CLI run against one repository's own dockerd only.

Non-interactive: the command gets no standard input and no terminal; what it writes
comes back as frames while it runs, then its exit code.
"""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import os
import shutil
import signal
import tempfile
from collections.abc import AsyncGenerator, Sequence
from pathlib import Path

from berth_agent.errors import InvalidRequest, Unsupported
from berth_common.agent_api.models import ExecExit, ExecOutput, ExecStream

# A session certificate lives 10 minutes; a command is cut at that, whatever it does.
EXEC_SECONDS = 600.0
# Global options of the docker CLI a session may give before its subcommand; every other
# one (-H/--host, -c/--context, --config, --tls*, ...) could reach another daemon or read
# the agent's own configuration.
_PLAIN_OPTIONS = {"-D", "--debug", "-v", "--version", "-h", "--help"}
_VALUED_OPTIONS = {"-l", "--log-level"}
_REFUSED_COMMANDS = {"context"}  # contexts name other daemons
_CHUNK = 64 * 1024
_QUEUED_FRAMES = 64


def docker_arguments(argv: Sequence[str]) -> list[str]:
    """argv's arguments after `docker`, once they are known to reach no other daemon;
    InvalidRequest says what is refused."""
    if not argv or argv[0] != "docker":
        raise InvalidRequest("a session runs the docker command only: argv[0] must be 'docker'")
    args = list(argv[1:])
    if any("\0" in arg for arg in args):
        raise InvalidRequest("an argument holds a NUL character")
    i = 0
    while i < len(args) and args[i].startswith("-"):
        name, equals, _ = args[i].partition("=")
        if name in _VALUED_OPTIONS and not equals:
            i += 1  # its value, whatever it looks like (as docker reads it)
        elif name not in _PLAIN_OPTIONS | _VALUED_OPTIONS:
            raise InvalidRequest(
                f"docker option {name} is not allowed in a session: the command runs against "
                "this repository's own daemon only (no -H/--host, -c/--context, --config or "
                "--tls options)"
            )
        i += 1
    if i < len(args) and args[i] in _REFUSED_COMMANDS:
        raise InvalidRequest(f"docker {args[i]} is not allowed in a session")
    return args


def docker_cli() -> str:
    found = shutil.which("docker")
    if found is None:
        raise Unsupported("this host has no docker command (Debian: apt-get install docker.io)")
    return found


def exit_code(returncode: int) -> int:
    """A shell's way: a command killed by signal N exited 128 + N."""
    return returncode if returncode >= 0 else 128 - returncode


async def run_docker(
    docker: str, socket: Path, args: Sequence[str], seconds: float = EXEC_SECONDS
) -> AsyncGenerator[ExecOutput | ExecExit, None]:
    """`docker -H unix://SOCKET ARGS` with an environment of its own (no DOCKER_HOST,
    DOCKER_CONTEXT or the agent's docker config; an empty config and working folder):
    its output as it comes, then its exit. Killed when the caller stops reading (a
    client that went away) or after seconds."""
    with tempfile.TemporaryDirectory(prefix="berth-session-") as home:
        config = Path(home, "config")
        config.mkdir()
        env = {
            "PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
            "HOME": home,
            "DOCKER_CONFIG": str(config),
            "DOCKER_CLI_HINTS": "false",
            "LANG": "C.UTF-8",
        }
        proc = await asyncio.create_subprocess_exec(
            docker,
            "-H",
            f"unix://{socket}",
            *args,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=env,
            cwd=home,
            start_new_session=True,  # its own process group: a plugin it starts dies with it
        )
        frames: asyncio.Queue[ExecOutput | None] = asyncio.Queue(_QUEUED_FRAMES)
        assert proc.stdout is not None and proc.stderr is not None
        pumps = [
            asyncio.create_task(_pump(proc.stdout, "stdout", frames)),
            asyncio.create_task(_pump(proc.stderr, "stderr", frames)),
        ]
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds
        try:
            open_pipes = len(pumps)
            while open_pipes:
                frame = await asyncio.wait_for(frames.get(), max(deadline - loop.time(), 0))
                if frame is None:
                    open_pipes -= 1
                else:
                    yield frame
            code = await asyncio.wait_for(proc.wait(), max(deadline - loop.time(), 0.1))
            yield ExecExit(exit=exit_code(code))
        except TimeoutError:
            _kill(proc)
            await proc.wait()
            yield ExecExit(
                exit=exit_code(-signal.SIGKILL),
                message=f"killed after {seconds:.0f} s, a session command's limit",
            )
        finally:
            _kill(proc)
            for pump in pumps:
                pump.cancel()


async def _pump(
    reader: asyncio.StreamReader, stream: ExecStream, frames: asyncio.Queue[ExecOutput | None]
) -> None:
    # Incremental: a character split between two reads is decoded whole.
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    while chunk := await reader.read(_CHUNK):
        text = decoder.decode(chunk)
        if text:
            await frames.put(ExecOutput(stream=stream, data=text))
    rest = decoder.decode(b"", final=True)
    if rest:
        await frames.put(ExecOutput(stream=stream, data=rest))
    await frames.put(None)


def _kill(proc: asyncio.subprocess.Process) -> None:
    if proc.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
