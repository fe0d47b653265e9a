"""Asking the DNS server spec.dns's records are written to: the adapter behind
placement/dns_check.py."""

from __future__ import annotations

from berth_common.dns_query import NotAnswered, ask
from berth_operator.placement.dns_check import NameAnswer


def parse_server(server: str) -> tuple[str, int]:
    """ADDRESS, ADDRESS:PORT or [IPv6]:PORT; port 53 when none is given."""
    if server.startswith("["):
        address, _, port = server[1:].partition("]")
        return address, int(port.lstrip(":") or 53)
    if server.count(":") == 1:
        address, port = server.split(":")
        return address, int(port)
    return server, 53


class DNSLookup:
    def __init__(self, server: str, timeout: float = 0.5) -> None:
        self.server = server
        self.address, self.port = parse_server(server)
        self.timeout = timeout

    def ask(self, hostname: str, record_type: str) -> NameAnswer:
        answer = ask(hostname, self.address, self.port, record_type, self.timeout)
        if isinstance(answer, NotAnswered):
            return NameAnswer(hostname, None, answer.why)
        return NameAnswer(hostname, answer.values)
