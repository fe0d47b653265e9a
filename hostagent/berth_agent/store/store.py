"""Repository images on a datastore: create, mount, unmount, inspect, delete."""

from __future__ import annotations

import datetime as dt
import logging
import os
import shutil
from pathlib import Path

from berth_agent.errors import Conflict, InsufficientSpace, InvalidRequest, NotFound
from berth_agent.store import luks
from berth_agent.store.mounts import loops_backed_by, mount_points_of, mount_source
from berth_agent.store.naming import new_guid, parse_size, validate_guid, validate_name
from berth_common.agent_api.models import RepositoryRecord
from berth_common.agent_api.services import RepositoryServices
from berth_common.process import run

log = logging.getLogger("berth.agent.store")

META_DIR = ".berth"  # inside the repository: its identity and services travel with it
DOCKER_DIR = "docker"  # the data-root of the repository's own dockerd


class RepositoryStore:
    def __init__(self, data_dir: Path, mount_root: Path | None = None) -> None:
        self.data_dir = data_dir
        self.images_dir = data_dir / "images"
        self.mount_root = mount_root or data_dir / "mounts"

    # --- paths ---------------------------------------------------------------------
    def image_path(self, guid: str) -> Path:
        return self.images_dir / f"{guid}.img"

    def record_path(self, guid: str) -> Path:
        return self.images_dir / f"{guid}.json"

    def mount_path(self, guid: str) -> Path:
        return self.mount_root / guid

    def docker_root(self, guid: str) -> Path:
        return self.mount_path(guid) / DOCKER_DIR

    # --- lookup --------------------------------------------------------------------
    def list(self) -> list[RepositoryRecord]:
        if not self.images_dir.exists():
            return []
        records = [
            RepositoryRecord.model_validate_json(p.read_text())
            for p in sorted(self.images_dir.glob("*.json"))
        ]
        return sorted(records, key=lambda r: r.name)

    def find(self, ref: str) -> RepositoryRecord:
        """By name or GUID; NotFound names what exists."""
        if "/" in ref or ref in ("", ".", ".."):
            raise InvalidRequest(f"repository {ref!r} is not a name or GUID")
        for record in self.list():
            if ref in (record.name, record.guid):
                return record
        raise NotFound(f"repository {ref!r} does not exist on this host")

    def exists(self, ref: str) -> bool:
        try:
            self.find(ref)
        except NotFound:
            return False
        return True

    # --- create / delete -----------------------------------------------------------
    def create(
        self,
        name: str,
        size: str,
        services: RepositoryServices,
        *,
        guid: str | None = None,
        key: bytes | None = None,
    ) -> RepositoryRecord:
        validate_name(name)
        size_bytes = parse_size(size)
        guid = validate_guid(guid) if guid else new_guid()
        if self.exists(name) or self.exists(guid):
            raise Conflict(f"repository {name!r} already exists on this host")
        if key is not None:
            luks.require_dm_crypt()
        self.images_dir.mkdir(parents=True, exist_ok=True)
        total = shutil.disk_usage(self.images_dir).total
        if size_bytes > total:
            raise InsufficientSpace(f"size {size} exceeds the datastore ({total / 2**30:.1f} GiB)")
        image = self.image_path(guid)
        record = RepositoryRecord(
            guid=guid,
            name=name,
            size_bytes=size_bytes,
            encrypted=key is not None,
            created_at=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        )
        try:
            with image.open("xb") as f:
                f.truncate(size_bytes)  # sparse: allocated as data is written
            device = image
            if key is not None:
                luks.format_image(image, key)
                device = luks.open_image(image, guid, key)
            # btrfs's default metadata DUP, though every move sends each metadata change
            # twice (a final delta 3.5 MB, not 1.8): with "-m single" mkfs leaves an 8 MiB
            # metadata chunk, data chunks take the rest, and a 1 GiB repository was full
            # at 792 MiB of data.
            run(["mkfs.btrfs", "-q", "-L", name[:255], str(device)])
            if key is not None:
                luks.close_image(guid)
            self._write_record(record)
            self.mount(guid, key=key)
            meta = self.mount_path(guid) / META_DIR
            meta.mkdir(exist_ok=True)
            (meta / "repository.json").write_text(record.model_dump_json(indent=2))
            (meta / "services.json").write_text(services.model_dump_json(indent=2))
            self.docker_root(guid).mkdir(exist_ok=True)
            self.unmount(guid)
        except BaseException:
            self._discard(guid)
            raise
        log.info("repository created", extra={"repository": name, "guid": guid, "size": size_bytes})
        return record

    def _write_record(self, record: RepositoryRecord) -> None:
        tmp = self.record_path(record.guid).with_suffix(".tmp")
        tmp.write_text(record.model_dump_json(indent=2))
        os.replace(tmp, self.record_path(record.guid))

    def _discard(self, guid: str) -> None:
        """Undo a half-made create (only ever called for a GUID this call made)."""
        if mount_source(self.mount_path(guid)):
            run(["umount", str(self.mount_path(guid))], check=False)
        luks.close_image(guid)
        for path in (self.image_path(guid), self.record_path(guid)):
            path.unlink(missing_ok=True)
        if self.mount_path(guid).exists():
            self.mount_path(guid).rmdir()

    def delete(self, ref: str) -> RepositoryRecord:
        """Remove the image for good. Only on an explicit request, never in a migration."""
        record = self.find(ref)
        if self.is_mounted(record.guid):
            raise Conflict(f"repository {record.name!r} is mounted; take it down first")
        self.image_path(record.guid).unlink(missing_ok=True)
        self.record_path(record.guid).unlink()
        if self.mount_path(record.guid).exists():
            self.mount_path(record.guid).rmdir()
        log.info("repository deleted", extra={"repository": record.name, "guid": record.guid})
        return record

    # --- mount -----------------------------------------------------------------------
    def is_mounted(self, guid: str) -> bool:
        return mount_source(self.mount_path(guid)) is not None

    def mount(self, ref: str, *, key: bytes | None = None) -> Path:
        """Mount at <mount-root>/<guid>; idempotent; Conflict if mounted anywhere else."""
        record = self.find(ref)
        target = self.mount_path(record.guid)
        if self.is_mounted(record.guid):
            return target
        image = self.image_path(record.guid)
        for loop in loops_backed_by(image):
            elsewhere = [p for p in mount_points_of(loop) if p != str(target)]
            if elsewhere:
                raise Conflict(f"repository {record.name!r} is already mounted at {elsewhere[0]}")
        target.mkdir(parents=True, exist_ok=True)
        # An image just written (by a transfer or a copy) may still sit in the page
        # cache; make it durable so the loop device cannot read older blocks.
        fd = os.open(image, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        if record.encrypted:
            if key is None:
                raise InvalidRequest(f"repository {record.name!r} is encrypted: a key is needed")
            device = luks.open_image(image, record.guid, key)
            run(["mount", "-o", "noatime", str(device), str(target)])
        else:
            # -o loop sets autoclear: the loop device is released with the mount.
            run(["mount", "-o", "loop,noatime", str(image), str(target)])
        log.info("repository mounted", extra={"repository": record.name, "path": str(target)})
        return target

    def unmount(self, ref: str) -> None:
        record = self.find(ref)
        target = self.mount_path(record.guid)
        if self.is_mounted(record.guid):
            run(["umount", str(target)])
            log.info("repository unmounted", extra={"repository": record.name})
        if record.encrypted:
            luks.close_image(record.guid)

    def services(self, ref: str) -> RepositoryServices:
        record = self.find(ref)
        found = self.mounted_services(record.guid)
        if found is None:
            raise Conflict(f"repository {record.name!r} is not mounted")
        return found

    def mounted_services(self, guid: str) -> RepositoryServices | None:
        """What the repository runs, read from inside it; None where it is not mounted."""
        path = self.mount_path(guid) / META_DIR / "services.json"
        if not path.exists():
            return None
        return RepositoryServices.model_validate_json(path.read_text())

    def usage(self, ref: str) -> tuple[int, int]:
        """The image's size, and what it takes on the datastore (allocated bytes)."""
        record = self.find(ref)
        stat = self.image_path(record.guid).stat()
        return stat.st_size, stat.st_blocks * 512

    def set_moved_to(self, guid: str, machine: str | None) -> None:
        record = self.find(guid)
        self._write_record(record.model_copy(update={"moved_to": machine}))

    def adopt_record(self, record: RepositoryRecord, moved_to: str | None) -> None:
        """Record an image that arrived from another host (the transfer wrote the image).
        moved_to names where the repository runs meanwhile (see Receiver.commit)."""
        self.images_dir.mkdir(parents=True, exist_ok=True)
        self._write_record(record.model_copy(update={"moved_to": moved_to}))
