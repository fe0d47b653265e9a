"""Finding CRIU, and reading what it says when it fails."""

from __future__ import annotations

import os
import re
from pathlib import Path

# berth's installer puts a CRIU >= 4.2 here, before Debian's older one on PATH.
CRIU_DIR = "/usr/local/sbin"


def path_with_criu() -> str:
    """PATH with berth's CRIU first: runc runs the `criu` it finds on PATH."""
    path = os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
    return path if CRIU_DIR in path.split(":") else f"{CRIU_DIR}:{path}"


def environment_with_criu() -> dict[str, str]:
    return {**os.environ, "PATH": path_with_criu()}


def criu_log_excerpt(message: str, lines: int = 6) -> str:
    """CRIU's own error lines from the log a failed restore names ("... path= FILE: ..."
    or "log file: FILE"):
    runc's message says only "criu failed: type NOTIFY errno 0", and the log goes with the
    container's bundle once the repository is taken down."""
    found = re.search(r"(?:path=|log file:)\s*(\S+\.log)", message)
    return log_excerpt(Path(found.group(1)), lines) if found else ""


def log_excerpt(log: Path, lines: int = 6) -> str:
    """ "; criu: " and the last error lines of a CRIU log, or "" (no log, no error)."""
    try:
        text = log.read_text(errors="replace")
    except OSError:
        return ""
    errors = criu_errors(text)[-lines:]
    return "; criu: " + " | ".join(errors) if errors else ""


def criu_errors(log_text: str) -> list[str]:
    """The lines of a CRIU log that report an error, without their timestamps."""
    return [
        re.sub(r"^\(\s*[0-9.]+\)\s*", "", line).strip()
        for line in log_text.splitlines()
        if "error" in line.lower() or "fail" in line.lower()
    ]
