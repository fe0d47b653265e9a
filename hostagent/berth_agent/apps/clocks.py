"""clocks: a process that samples its three clocks every 100 ms and logs them, to show
what a move does to them.

CLOCK_REALTIME is the wall clock: it goes on through a move's downtime. CLOCK_MONOTONIC
and CLOCK_BOOTTIME count from the machine's boot, so another machine's differ by the
two uptimes; a restored process must find them continuing from where it left them
(paused for the downtime, never back, never days ahead), or every timer computed from
them fires days late or at once. CRIU restores the process into a time namespace whose
offsets make them continue.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass

from berth_agent.apps import databases
from berth_agent.runtime.debian_images import DebianImage
from berth_common.agent_api.services import ServiceSpec

NAME = "clocks"
IMAGE = DebianImage(
    image="berth/clocks:1",
    recipe=databases.RECIPE,  # any Debian rootfs with perl-base; this one is cached
    changes=("ENV LANG=C.UTF-8", f"ENV PATH={databases.PATH}"),
)
SCRIPT = r"""
use Time::HiRes qw(clock_gettime CLOCK_REALTIME CLOCK_MONOTONIC CLOCK_BOOTTIME);
$| = 1;
while (1) {
  printf "clocks %.6f %.6f %.6f\n", clock_gettime(CLOCK_REALTIME),
    clock_gettime(CLOCK_MONOTONIC), clock_gettime(CLOCK_BOOTTIME);
  select(undef, undef, undef, 0.1);
}
"""
_LINE = re.compile(r"clocks (\d+\.\d+) (\d+\.\d+) (\d+\.\d+)$")


def service() -> ServiceSpec:
    return ServiceSpec(
        name=NAME, image=IMAGE.image, command=["perl", "-e", SCRIPT], checkpoint=True
    )


@dataclass(frozen=True)
class Sample:
    realtime: float
    monotonic: float
    boottime: float


@dataclass(frozen=True)
class Step:
    """Two samples in a row: how far each clock went between them."""

    realtime: float
    monotonic: float
    boottime: float


def samples(lines: list[str]) -> list[Sample]:
    found = []
    for line in lines:
        match = _LINE.search(line)
        if match:
            found.append(Sample(*(float(v) for v in match.groups())))
    return found


def widest_step(found: list[Sample]) -> Step:
    """The step across which the wall clock went furthest: the move's downtime."""
    steps = [
        Step(b.realtime - a.realtime, b.monotonic - a.monotonic, b.boottime - a.boottime)
        for a, b in itertools.pairwise(found)
    ]
    return max(steps, key=lambda step: step.realtime)


def continued(step: Step, slack: float = 0.5) -> bool:
    """Whether the monotonic and boot clocks went on across a step: forward, and no
    further than the wall clock went (plus slack for the sampling)."""
    return all(0 <= clock <= step.realtime + slack for clock in (step.monotonic, step.boottime))
