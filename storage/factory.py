from __future__ import annotations

from typing import Any

from storage.base import BlobStorage


def create_storage(driver: str, options: dict[str, Any]) -> BlobStorage:
    """Build a driver. filesystem: options["root"]. s3: options["s3"], a
    registry.config.S3Config (or a mapping with the same keys)."""
    if driver == "filesystem":
        from storage.filesystem import FilesystemStorage

        return FilesystemStorage(root=options["root"])
    if driver == "s3":
        from storage.s3 import S3Storage

        settings = options.get("s3")
        if settings is None:
            raise ValueError("the s3 storage driver needs its settings: options['s3'] (storage.s3 in the config)")
        return S3Storage.from_config(settings)
    raise ValueError(f"unknown storage driver {driver!r}")
