"""Whether a placement's DNS names answer where it runs (pure).

berth writes a DNSEndpoint; external-dns copies it into the DNS server some time later
(on its own interval), or never: a server that refuses its updates shows up only in
external-dns's log, and the DNSEndpoint's status says nothing of it. So, when the
operator is given the DNS server to ask, it asks, as a client would, and the placement
is Ready only once every name answers the machine's address.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

# How soon to ask again while external-dns may still be on its way (the lab's syncs
# every second), and once it is overdue (a person has to fix something).
ASK_AGAIN_SECONDS = 1.0
OVERDUE_ASK_AGAIN_SECONDS = 10.0


@dataclass(frozen=True)
class NameAnswer:
    """What the DNS server answered for one name."""

    hostname: str
    values: tuple[str, ...] | None  # None: no answer (timeout, refused, unreachable)
    error: str = ""

    def describe(self) -> str:
        if self.values is None:
            return f"{self.hostname}: {self.error or 'no answer'}"
        return f"{self.hostname} -> {', '.join(self.values) or 'no record'}"


@dataclass(frozen=True)
class DNSCheck:
    confirmed: bool
    overdue: bool  # past the grace: announce it, a person has to look
    message: str
    ask_again_after: float


def check_records(
    server: str, target: str, answers: Sequence[NameAnswer], waited: float, grace: float
) -> DNSCheck:
    """Every name must answer exactly the target (an old machine's address still among
    the values would send some clients there). `waited`: seconds since the records
    were written. The messages hold no clock, so a status is written again only when
    an answer changes."""
    wrong = [a for a in answers if a.values is None or set(a.values) != {target}]
    if not wrong:
        return DNSCheck(True, False, f"{server} answers {target}", 0.0)
    detail = "; ".join(a.describe() for a in wrong)
    if waited < grace:
        return DNSCheck(
            False,
            False,
            f"waiting for {server} to answer {target} ({detail})",
            ASK_AGAIN_SECONDS,
        )
    return DNSCheck(
        False,
        True,
        f"{server} does not answer {target} {grace:.0f}s after the records were written "
        f"({detail}): is external-dns running, and does the DNS server accept its updates?",
        OVERDUE_ASK_AGAIN_SECONDS,
    )
