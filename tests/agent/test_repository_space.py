"""A repository's filesystem on a real btrfs loop image: the space it offers."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from berth_agent.store.store import RepositoryStore
from berth_common.agent_api.services import RepositoryServices

pytestmark = pytest.mark.agent
MIB = 1024 * 1024


def test_a_1_gib_repository_holds_small_files_and_85_percent_of_its_size(tmp_path: Path) -> None:
    """With metadata single, mkfs leaves one 8 MiB metadata chunk; data chunks then took
    all the free space and a 1 GiB repository refused writes at 792 MiB ("No space left
    on device", the benchmark's 768 MiB fill on top of pulse's image)."""
    store = RepositoryStore(tmp_path / "data", mount_root=tmp_path / "mounts")
    record = store.create("space", "1G", RepositoryServices())
    try:
        store.mount(record.guid)
        assert store.is_mounted(record.guid)
        root = store.mount_path(record.guid)
        for i in range(2000):  # files of an image's layers: metadata
            (root / f"small-{i}").write_text(str(i))
        chunk = os.urandom(MIB)
        with open(root / "fill.bin", "wb") as fill:
            for _ in range(870):
                fill.write(chunk)
            fill.flush()
            os.fsync(fill.fileno())
    finally:
        store.unmount(record.guid)
        store.delete(record.guid)
    assert not store.image_path(record.guid).exists()
