"""apps/clocks.py: reading the clocks app's samples, and what counts as clocks that
went on across a move."""

from __future__ import annotations

import pytest

from berth_agent.apps import clocks

pytestmark = pytest.mark.unit


def lines(*samples: tuple[float, float, float]) -> list[str]:
    return [f"2026-12-01T00:00:00.000000000Z clocks {r:.6f} {m:.6f} {b:.6f}" for r, m, b in samples]


def test_the_widest_step_is_the_move_and_its_clocks_paused_with_it() -> None:
    found = clocks.samples(
        lines((100.0, 5000.0, 5001.0), (100.1, 5000.1, 5001.1), (101.4, 5000.6, 5001.6),
              (101.5, 5000.7, 5001.7))
    )  # fmt: skip
    step = clocks.widest_step(found)
    assert step.realtime == pytest.approx(1.3)
    assert step.monotonic == pytest.approx(0.5)
    assert clocks.continued(step)


def test_clocks_that_went_back_or_leapt_ahead_did_not_continue() -> None:
    back = clocks.Step(realtime=1.3, monotonic=-604800.0, boottime=-604800.0)
    ahead = clocks.Step(realtime=1.3, monotonic=604800.0, boottime=0.5)
    assert not clocks.continued(back)
    assert not clocks.continued(ahead)


def test_lines_that_are_not_samples_are_skipped() -> None:
    assert clocks.samples(["starting", "clocks x y z", *lines((1.0, 2.0, 3.0))]) == [
        clocks.Sample(1.0, 2.0, 3.0)
    ]
