"""Pure validation of repository names, GUIDs and sizes."""

from __future__ import annotations

import re
import uuid

from berth_agent.errors import InvalidRequest
from berth_common.units import parse_image_size

_NAME = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
MIN_SIZE = 256 * 2**20  # btrfs needs room for its metadata and a dockerd
MAX_SIZE = 16 * 2**40


def validate_name(name: str) -> str:
    """A DNS-label-like name: no path separators, no dots, no upper case."""
    if not _NAME.match(name):
        raise InvalidRequest(
            f"repository name {name!r} is invalid: use 1-63 lowercase letters, digits "
            "and '-', starting and ending with a letter or digit"
        )
    return name


def validate_guid(guid: str) -> str:
    try:
        parsed = uuid.UUID(guid)
    except ValueError:
        raise InvalidRequest(f"repository GUID {guid!r} is not a UUID") from None
    if str(parsed) != guid:
        raise InvalidRequest(f"repository GUID {guid!r} must be lowercase and hyphenated")
    return guid


def parse_size(size: str) -> int:
    """'2G' -> bytes; sizes between 256M and 16T."""
    try:
        value = parse_image_size(size)
    except ValueError as err:
        raise InvalidRequest(str(err)) from None
    if not MIN_SIZE <= value <= MAX_SIZE:
        raise InvalidRequest(f"size {size} is out of range: between 256M and 16T")
    return value


def new_guid() -> str:
    return str(uuid.uuid4())
