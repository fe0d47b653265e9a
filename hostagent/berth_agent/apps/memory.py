"""memory: a container holding MiB of random bytes in RAM that re-checks their checksum.

It fills its memory once (`memory BYTES md5 SUM` in its log), then every few seconds
reads all of it again and logs `ok N` or `CORRUPT N SUM`. After a move, the same process
(one `memory` line, the count going on) and only `ok` lines prove that every page came
along intact; a restart shows as a second `memory` line.
"""

from __future__ import annotations

import re

from berth_agent.runtime.images import BUSYBOX_IMAGE
from berth_common.agent_api.services import ServiceSpec

NAME = "memory"
CHUNK = 786432  # random bytes per chunk: one line of 1 MiB in base64
# busybox awk holds the memory as chunks of 1 MiB (base64 of random bytes). A busy one
# rewrites MEMORY_DIRTY_MIBS of them a second, each copied to a new allocation with the
# same content (dirty pages, an unchanged checksum).
SCRIPT = r"""
head -c $((MEMORY_MIB * 786432)) /dev/urandom | base64 -w 1048576 |
awk -v every="$MEMORY_EVERY" -v dirty="$MEMORY_DIRTY_MIBS" '
function checksum(   cmd, line, parts, i) {
  cmd = "md5sum > /tmp/memory.md5"
  for (i = 1; i <= n; i++) printf "%s", chunk[i] | cmd
  close(cmd)
  getline line < "/tmp/memory.md5"
  close("/tmp/memory.md5")
  split(line, parts, " ")
  return parts[1]
}
{ chunk[++n] = $0 }
END {
  want = checksum()
  bytes = 0
  for (i = 1; i <= n; i++) bytes += length(chunk[i])
  print "memory " bytes " md5 " want
  fflush()
  next_check = 0; k = 0
  for (t = 0; ; t++) {
    for (j = 0; j < dirty / 10; j++) { k = k % n + 1; chunk[k] = substr(chunk[k], 1) }
    system("sleep 0.1")
    if (t * 0.1 < next_check) continue
    next_check += every
    got = checksum()
    checks++
    if (got == want) print "ok " checks
    else print "CORRUPT " checks " " got
    fflush()
  }
}'
"""

_LINE = re.compile(r"^\S+ (memory \d+ md5 \w+|ok \d+|CORRUPT \d+ \w+)$")


def service(mib: int, every: float = 1.0, dirty_mib_per_s: int = 0) -> ServiceSpec:
    """memory as a checkpointed service holding about mib MiB (in chunks of 1 MiB) and
    rewriting dirty_mib_per_s of them each second."""
    return ServiceSpec(
        name=NAME,
        image=BUSYBOX_IMAGE,
        command=["sh", "-c", SCRIPT],
        environment={
            "MEMORY_MIB": str(mib),
            "MEMORY_EVERY": f"{every:g}",
            "MEMORY_DIRTY_MIBS": str(dirty_mib_per_s),
        },
        checkpoint=True,
    )


def events(lines: list[str]) -> list[str]:
    """Its log's own lines ("memory …", "ok N", "CORRUPT …"), from Docker's
    timestamped log lines."""
    return [m.group(1) for line in lines if (m := _LINE.match(line))]


def problems(lines: list[str]) -> list[str]:
    """What shows the memory was not carried intact: a restart or a bad checksum."""
    seen = events(lines)
    found = [e for e in seen if e.startswith("CORRUPT")]
    fills = [e for e in seen if e.startswith("memory ")]
    if len(fills) != 1:
        found.append(f"{len(fills)} fills of memory (a restart refills it)")
    checks = [int(e.split()[1]) for e in seen if e.startswith(("ok ", "CORRUPT "))]
    if checks != list(range(1, len(checks) + 1)):
        found.append(f"checks out of order: {checks[:3]}…{checks[-3:]}")
    return found
