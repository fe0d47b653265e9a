"""berth-lab's pure pieces: which lab a command acts on, what `exec` runs with, and
which processes count as a lab's."""

from __future__ import annotations

from pathlib import Path

import pytest

from berth_lab.cli import exec_environ, lab_name
from berth_lab.leftovers import Leftovers
from berth_lab.plan import OWNER_ENV, plan_lab
from berth_lab.procs import belongs_to, names_dir

pytestmark = pytest.mark.unit
VENV_BIN = Path("/work/berth/.venv/bin")
STATE = Path("/var/lib/berth-lab/t")


@pytest.mark.parametrize(
    ("command", "given", "name"),
    [
        ("demo", None, "demo"),  # the demo's own lab: it never tears down someone's `lab`
        ("demo", "mine", "mine"),  # --name is honoured by the demo (also with --keep)
        ("up", None, "lab"),
        ("down", "mine", "mine"),
    ],
)
def test_the_lab_a_command_acts_on(command: str, given: str | None, name: str) -> None:
    assert lab_name(command, given) == name


def test_exec_puts_the_labs_bin_dir_first_on_path() -> None:
    env = exec_environ({"PATH": "/usr/local/bin:/usr/bin", "HOME": "/root"}, VENV_BIN)
    assert env["PATH"] == f"{VENV_BIN}:/usr/local/bin:/usr/bin"
    assert env["HOME"] == "/root"


def test_exec_keeps_one_copy_of_the_bin_dir_and_works_without_path() -> None:
    env = exec_environ({"PATH": f"/usr/bin:{VENV_BIN}"}, VENV_BIN)
    assert env["PATH"] == f"{VENV_BIN}:/usr/bin"
    assert exec_environ({}, VENV_BIN)["PATH"].startswith(f"{VENV_BIN}:/usr/sbin")


def test_a_path_names_the_state_dir_only_below_it_not_a_sibling() -> None:
    assert names_dir("--data-dir=/var/lib/berth-lab/t/kube/etcd", STATE)
    assert names_dir("/var/lib/berth-lab/t", STATE)
    assert not names_dir("--data-dir=/var/lib/berth-lab/tcli/kube/etcd", STATE)


def test_a_process_is_the_labs_by_its_mark_or_its_command_line() -> None:
    marked = {OWNER_ENV: str(STATE)}
    assert belongs_to(["dockerd", "--data-root=/var/lib/berth/x"], marked, STATE) is True
    etcd = ["etcd", f"--data-dir={STATE}/kube/etcd"]
    assert belongs_to(etcd, {}, STATE) is False  # the lab's, by its argv only
    other_lab = {OWNER_ENV: "/var/lib/berth-lab/tcli"}
    assert belongs_to(["dockerd"], other_lab, STATE) is None
    assert belongs_to(["sleep", "infinity"], {}, STATE) is None


def test_the_owner_mark_names_the_labs_state_dir() -> None:
    assert plan_lab("t").owner_env() == {OWNER_ENV: "/var/lib/berth-lab/t"}


def test_leftovers_are_true_while_anything_is_left() -> None:
    assert not Leftovers()
    assert Leftovers(processes=["123 dockerd: dockerd"])
    assert Leftovers(state=["/var/lib/berth-lab/t"]).as_dict()["state"] == ["/var/lib/berth-lab/t"]
