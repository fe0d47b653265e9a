"""berth's transfer vs plain copy and rsync, side by side on one lab, same images.

Issue targets: a 50 MB change in a 2 GB image pushes <= 1.05 x 50 MB and its work
(find + send + apply + verify) takes under 1 s on the lab.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import time
import uuid
from pathlib import Path

from berth_agent.transfer import layout
from berth_common import tokens
from berth_common.agent_api.models import PushResult
from berth_lab import Lab, plan_lab
from berth_lab.agents import agent_endpoint

MiB = 2**20
RESULTS = Path(__file__).resolve().parent / "results"


def timed(argv: list[str]) -> tuple[float, str]:
    started = time.monotonic()
    out = subprocess.run(argv, check=True, capture_output=True, text=True).stdout
    return time.monotonic() - started, out


def push(lab: Lab, repo: str, guid: str) -> tuple[float, PushResult]:
    tid = f"bench-{uuid.uuid4().hex[:8]}"
    token = tokens.issue(tid, guid, "host-a", "host-b", lab.pki.client)
    started = time.monotonic()
    with lab.agent("a") as agent:
        events = list(agent.push(repo, agent_endpoint(lab.host("b")), token, tid))
    result = events[-1]
    assert isinstance(result, PushResult), result
    return time.monotonic() - started, result


def write(lab: Lab, guid: str, mib: int, seek: int) -> None:
    lab.host("a").run(
        [
            "sh",
            "-c",
            f"dd if=/dev/urandom of=/var/lib/berth/mounts/{guid}/data "
            f"bs=1M count={mib} seek={seek} conv=notrunc status=none && sync",
        ]
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--bandwidth", help="shape the lab links, e.g. 1gbit")
    parser.add_argument("--data-mib", type=int, default=300)
    parser.add_argument("--change-mib", type=int, default=50)
    args = parser.parse_args()

    Lab(plan_lab("bench", hosts=2)).down()
    lab = Lab(plan_lab("bench", hosts=2, bandwidth=args.bandwidth)).up()
    try:
        return run(lab, args)
    finally:
        lab.down()


def run(lab: Lab, args: argparse.Namespace) -> int:
    repo = "bench"
    with lab.agent("a") as a:
        guid = a.create(repo, "2G").guid
        a.up(repo)
    write(lab, guid, args.data_mib, 0)
    store_a = lab.host("a").plan.datastore_mount
    store_b = lab.host("b").plan.datastore_mount
    image_a = store_a / "images" / f"{guid}.img"
    scratch_a, scratch_b = store_a / "bench", store_b / "bench"
    scratch_a.mkdir()
    scratch_b.mkdir()

    # Full: berth's sparse-aware push vs a plain copy of the same image between datastores.
    full_time, full = push(lab, repo, guid)
    layout.reflink(image_a, scratch_a / "snap-full.img")
    copy_time, _ = timed(
        [
            "cp",
            "--sparse=never",
            str(scratch_a / "snap-full.img"),
            str(scratch_b / "plain-copy.img"),
        ]
    )
    (scratch_b / "plain-copy.img").unlink()

    # Delta: berth vs rsync, each from the same old copy to the same new image.
    image_b = store_b / "images" / f"{guid}.img"
    layout.reflink(image_b, scratch_b / "rsync-target.img")  # b's image before the change
    write(lab, guid, args.change_mib, 100)
    layout.reflink(image_a, scratch_a / "snap-delta.img")  # a's image after it
    delta_time, delta = push(lab, repo, guid)
    rsync_time, rsync_out = timed(
        [
            "rsync",
            "--inplace",
            "--no-whole-file",
            "--ignore-times",  # same size and mtime must not let rsync skip the file
            "--stats",
            str(scratch_a / "snap-delta.img"),
            str(scratch_b / "rsync-target.img"),
        ]
    )
    literal = int(
        re.search(r"Literal data: ([\d,]+)", rsync_out)
        .group(1)  # type: ignore[union-attr]
        .replace(",", "")
    )

    change = args.change_mib * MiB
    work = sum(v for k, v in delta.durations.items() if k in ("find", "send", "commit"))
    rows = [
        (
            "delta push (berth)",
            delta.bytes_sent,
            delta_time,
            f"work {work:.2f}s: " + ", ".join(f"{k} {v:.3f}s" for k, v in delta.durations.items()),
        ),
        ("rsync --inplace --no-whole-file", literal, rsync_time, "reads and hashes both images"),
        ("full push (berth)", full.bytes_sent, full_time, "allocated blocks only"),
        ("plain copy (cp)", 2 * 2**30, copy_time, "whole image"),
    ]
    print(f"\n{'':34} {'bytes':>12} {'seconds':>8}  notes")
    for name, nbytes, seconds, note in rows:
        print(f"{name:34} {nbytes / 1e6:10.1f}MB {seconds:8.2f}  {note}")
    ratios = {
        "delta_bytes_over_change": delta.bytes_sent / change,
        "delta_time_vs_rsync": delta_time / rsync_time,
        "delta_bytes_vs_rsync": delta.bytes_sent / max(literal, 1),
        "full_time_vs_plain_copy": full_time / copy_time,
        "full_bytes_vs_image": full.bytes_sent / (2 * 2**30),
    }
    print("\nratios (lower is better for berth):")
    for key, value in ratios.items():
        print(f"  {key:28} {value:6.3f}")
    verdict = ratios["delta_bytes_over_change"] <= 1.05 and work < 1.0
    print(
        f"\ntarget (<= 1.05 x change, work < 1 s): {'MET' if verdict else 'NOT MET'} "
        f"({ratios['delta_bytes_over_change']:.3f} x, {work:.2f} s)"
    )
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "transfer.json").write_text(
        json.dumps(
            {
                "delta": delta,
                "full": full,
                "rsync": {"bytes": literal, "seconds": rsync_time},
                "plain_copy_seconds": copy_time,
                "ratios": ratios,
                "bandwidth": args.bandwidth,
            },
            indent=2,
            default=str,
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
