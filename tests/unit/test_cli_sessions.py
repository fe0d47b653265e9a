"""kubectl berth logs -f across a move (each line printed once), and exec's command line."""

from __future__ import annotations

import pytest

from kubectl_berth.log_lines import LogTime, Printed, stamp

pytestmark = pytest.mark.unit


def test_stamp_reads_docker_times_with_or_without_a_container() -> None:
    assert stamp("2026-12-02T06:10:00.123456789Z counter=4") == ("", LogTime(1796191800, 123456789))
    assert stamp("[app] 2026-12-02T06:10:00.5Z x") == ("app", LogTime(1796191800, 500000000))
    assert stamp("no time here") is None


def test_lines_repeated_by_the_new_machine_are_skipped() -> None:
    printed = Printed()
    old = [f"2026-12-02T06:10:0{i}.000000000Z counter={i}" for i in range(4)]
    assert [printed.is_new(line) for line in old] == [True] * 4
    # The new machine's log holds the old one's (it moved with the image), then more.
    new = [*old[1:], "2026-12-02T06:10:05.000000000Z counter=5"]
    assert [printed.is_new(line) for line in new] == [False, False, False, True]
    assert printed.since() == LogTime(1796191805, 0).epoch


def test_each_container_is_followed_on_its_own() -> None:
    printed = Printed()
    assert printed.is_new("[a] 2026-12-02T06:10:05.0Z x")
    assert printed.is_new("[b] 2026-12-02T06:10:01.0Z y")  # earlier, but another container
    assert not printed.is_new("[a] 2026-12-02T06:10:04.0Z z")


def test_exec_takes_its_command_after_dashes_wherever_our_flags_stand(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from kubectl_berth import cli

    seen: list[tuple[str, list[str]]] = []

    def record(berth: object, namespace: str, args: object) -> int:
        seen.append((namespace, list(args.argv)))  # type: ignore[attr-defined]
        return 0

    class NoCluster:
        default_namespace = "default"

        def __init__(self, *_: object) -> None: ...

    monkeypatch.setattr(cli, "Berth", NoCluster)
    monkeypatch.setitem(cli.COMMANDS, "exec", record)
    argv = ["exec", "pulse", "-n", "demo", "--", "docker", "ps", "-n", "3", "--", "x"]
    assert cli.main(argv) == 0
    assert seen == [("demo", ["docker", "ps", "-n", "3", "--", "x"])]
    assert cli.main(["logs", "pulse", "--", "docker"]) == 1
