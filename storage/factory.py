from __future__ import annotations

from typing import Any

from storage.base import BlobStorage


def create_storage(driver: str, options: dict[str, Any]) -> BlobStorage:
    if driver == "filesystem":
        from storage.filesystem import FilesystemStorage

        return FilesystemStorage(root=options["root"])
    raise ValueError(f"unknown storage driver {driver!r}")
