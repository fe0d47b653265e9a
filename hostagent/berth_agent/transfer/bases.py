"""Retained bases: after every transfer both sides keep an identical immutable copy of
the image (a reflink, so it costs nothing until the image changes) and its block hashes.
The next transfer in either direction sends only what differs from it."""

from __future__ import annotations

import datetime as dt
import os
import shutil
from pathlib import Path

from pydantic import BaseModel

from berth_agent.transfer.hashtree import BLOCK_SIZE, BlockHashes


class BaseInfo(BaseModel):
    root: str  # end-to-end digest of the base image; identical on both sides
    size: int
    block_size: int = BLOCK_SIZE
    created_at: str
    has_image: bool  # False where the datastore cannot reflink: hashes only

    @property
    def id(self) -> str:
        return self.root[:16]


class BaseStore:
    def __init__(self, data_dir: Path) -> None:
        self.root = data_dir / "bases"

    def dir(self, guid: str) -> Path:
        return self.root / guid

    def image(self, guid: str) -> Path:
        return self.dir(guid) / "base.img"

    def hashes_path(self, guid: str) -> Path:
        return self.dir(guid) / "base.hashes"

    def info(self, guid: str) -> BaseInfo | None:
        path = self.dir(guid) / "base.json"
        if not path.exists():
            return None
        info = BaseInfo.model_validate_json(path.read_text())
        if info.has_image and not self.image(guid).exists():
            return None
        return info

    def hashes(self, guid: str, info: BaseInfo) -> BlockHashes:
        return BlockHashes.load(self.hashes_path(guid), info.size, info.block_size)

    def replace(self, guid: str, image: Path | None, hashes: BlockHashes) -> BaseInfo:
        """Make image (moved, not copied; None for hashes only) and hashes the new base."""
        directory = self.dir(guid)
        directory.mkdir(parents=True, exist_ok=True)
        info = BaseInfo(
            root=hashes.root(),
            size=hashes.size,
            block_size=hashes.block_size,
            created_at=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            has_image=image is not None,
        )
        (directory / "base.json").unlink(missing_ok=True)  # invalid while we swap
        if image is not None:
            os.replace(image, self.image(guid))
        else:
            self.image(guid).unlink(missing_ok=True)
        hashes.save(self.hashes_path(guid))
        tmp = directory / "base.json.tmp"
        tmp.write_text(info.model_dump_json(indent=2))
        tmp.replace(directory / "base.json")
        return info

    def drop(self, guid: str) -> None:
        shutil.rmtree(self.dir(guid), ignore_errors=True)
