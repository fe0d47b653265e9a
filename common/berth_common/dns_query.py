"""One DNS question to one server, as a stub resolver asks it (dnspython, UDP)."""

from __future__ import annotations

from dataclasses import dataclass

import dns.exception
import dns.message
import dns.query
import dns.rcode
import dns.rdatatype


@dataclass(frozen=True)
class Answered:
    values: tuple[str, ...]  # the records' values as text; () when the name has none
    ttl: int  # the smallest TTL among them (0 without any)


@dataclass(frozen=True)
class NotAnswered:
    why: str  # a timeout, an unreachable server, a refusal


def ask(
    name: str, address: str, port: int, record_type: str = "A", timeout: float = 0.5
) -> Answered | NotAnswered:
    """name's records of that type (A, AAAA, CNAME, SOA) as the server answers now; a
    name that does not exist answers no values. A name's trailing dot is left out."""
    wanted = dns.rdatatype.from_text(record_type)
    query = dns.message.make_query(name, wanted)
    try:
        response = dns.query.udp(query, address, timeout=timeout, port=port)
    except (dns.exception.DNSException, OSError) as err:
        return NotAnswered(f"no answer from {address}:{port}: {err or type(err).__name__}")
    code = response.rcode()
    if code == dns.rcode.NXDOMAIN:
        return Answered((), 0)
    if code != dns.rcode.NOERROR:
        return NotAnswered(f"{address}:{port} answered {dns.rcode.to_text(code)}")
    found = [rrset for rrset in response.answer if rrset.rdtype == wanted]
    values = tuple(sorted(r.to_text().rstrip(".").lower() for rrset in found for r in rrset))
    return Answered(values, min((rrset.ttl for rrset in found), default=0))
