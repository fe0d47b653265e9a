"""The top-level operator/ folder must never shadow the standard library's operator."""

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit
REPO_ROOT = Path(__file__).resolve().parents[2]


def test_stdlib_operator_importable_from_repo_root() -> None:
    # sys.path[0] is the repository root here, as when a developer runs python there.
    code = "import operator; assert hasattr(operator, 'itemgetter'), operator.__file__"
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr
    assert (REPO_ROOT / "operator" / "berth_operator" / "__init__.py").exists()


def test_operator_folder_is_not_a_package() -> None:
    assert not (REPO_ROOT / "operator" / "__init__.py").exists()
    proc = subprocess.run(
        [sys.executable, "-c", "import operator; print(operator.__file__)"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    assert not proc.stdout.strip().startswith(str(REPO_ROOT))
