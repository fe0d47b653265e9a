"""The lab's git server: git's own `git http-backend` (smart HTTP, read-only) behind a
small HTTP server, serving the bare repositories of one directory, as a Git host serves
a GitOps controller. Flux's GitRepository accepts only http(s) and ssh URLs.

    python -m berth_lab.git_server ROOT PORT      # serves ROOT/*.git on 127.0.0.1:PORT

Pushes are refused (http-backend's default for anonymous clients): the tests commit
into the bare repositories through the file system.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit


def cgi_environment(
    root: Path, method: str, path: str, headers: dict[str, str], client: str
) -> dict[str, str]:
    """The CGI variables http-backend reads for one request."""
    url = urlsplit(path)
    env = {
        "GIT_PROJECT_ROOT": str(root),
        "GIT_HTTP_EXPORT_ALL": "1",
        "REQUEST_METHOD": method,
        "PATH_INFO": url.path,
        "QUERY_STRING": url.query,
        "REMOTE_ADDR": client,
        "CONTENT_TYPE": headers.get("content-type", ""),
        "CONTENT_LENGTH": headers.get("content-length", ""),
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
    }
    for name in ("content-encoding", "git-protocol"):
        if name in headers:
            env["HTTP_" + name.upper().replace("-", "_")] = headers[name]
    return env


def split_cgi_answer(answer: bytes) -> tuple[int, list[tuple[str, str]], bytes]:
    """http-backend's answer: (HTTP status, headers, body)."""
    # The headers end at the first blank line, whichever line ends it uses (the pack
    # that follows is binary, and may hold either sequence).
    ends = [(answer.find(sep), sep) for sep in (b"\r\n\r\n", b"\n\n") if sep in answer]
    at, separator = min(ends) if ends else (len(answer), b"")
    head, body = answer[:at], answer[at + len(separator) :]
    status, headers = 200, []
    for line in head.decode("latin-1").splitlines():
        name, _, value = line.partition(":")
        if name.lower() == "status":
            status = int(value.split()[0])
        elif name:
            headers.append((name, value.strip()))
    return status, headers, body


class GitHandler(BaseHTTPRequestHandler):
    root: Path  # set on the subclass the server makes

    def _serve(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        body = self.rfile.read(length) if length else b""
        headers = {k.lower(): v for k, v in self.headers.items()}
        env = cgi_environment(self.root, self.command, self.path, headers, self.client_address[0])
        done = subprocess.run(
            ["git", "http-backend"], input=body, env=env, capture_output=True, timeout=120
        )
        if done.returncode != 0 and not done.stdout:
            self.send_error(500, done.stderr.decode(errors="replace")[:200])
            return
        status, answer_headers, payload = split_cgi_answer(done.stdout)
        self.send_response(status)
        for name, value in answer_headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    do_GET = _serve
    do_POST = _serve

    def log_message(self, format: str, *args: object) -> None:
        sys.stderr.write(f"git-server: {self.address_string()} {format % args}\n")


def serve(root: Path, port: int) -> None:
    handler = type("Handler", (GitHandler,), {"root": root})
    ThreadingHTTPServer(("127.0.0.1", port), handler).serve_forever()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="berth_lab.git_server", description=__doc__)
    parser.add_argument("root", type=Path)
    parser.add_argument("port", type=int)
    args = parser.parse_args(argv)
    serve(args.root.resolve(), args.port)
    return 0


if __name__ == "__main__":
    sys.exit(main())
