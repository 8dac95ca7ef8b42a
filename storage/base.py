"""The driver protocol every blob storage backend implements."""

from __future__ import annotations

import errno
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, Protocol

DIGEST_PATH_RE = re.compile(r"^(sha256:[a-f0-9]{64}|sha512:[a-f0-9]{128})$")
UPLOAD_ID_RE = re.compile(r"^[A-Za-z0-9-]{8,64}$")

READ_CHUNK = 1 << 20  # large chunks: per-chunk overhead dominates small ones in Python


class StorageError(Exception):
    """A driver failure that is not the caller's fault."""


class BlobNotFound(StorageError):
    pass


class StorageUnavailable(StorageError):
    """The backend cannot be reached right now; the request may be retried."""


class StorageMissing(StorageError):
    """The storage itself (a bucket, the blob directory) does not exist."""


class StorageFull(StorageError):
    """The backend has no space left (a full disk or quota); writes fail until it has."""


NO_SPACE_ERRNOS = (errno.ENOSPC, errno.EDQUOT)


@dataclass(frozen=True)
class BlobInfo:
    digest: str
    size: int
    modified: float  # seconds since the epoch


class UploadWriter(Protocol):
    """Appends to one upload. `finish` makes the bytes durable and returns the
    driver state to keep for the next request of the same upload."""

    async def write(self, data: bytes) -> None: ...
    async def finish(self) -> dict[str, Any]: ...
    async def abort(self) -> None: ...


class BlobStorage(Protocol):
    name: str

    async def open(self) -> None: ...
    async def close(self) -> None: ...
    async def check(self) -> None:
        """Raise StorageError when the backend does not answer."""

    # uploads
    async def start_upload(self, upload_id: str) -> dict[str, Any]: ...
    async def upload_writer(self, upload_id: str, state: dict[str, Any], offset: int) -> UploadWriter: ...
    def read_upload(self, upload_id: str, state: dict[str, Any]) -> AsyncIterator[bytes]: ...
    async def commit_upload(self, upload_id: str, state: dict[str, Any], digest: str, size: int) -> None:
        """Move a finished upload to its content address. A blob already stored is kept."""

    async def cancel_upload(self, upload_id: str, state: dict[str, Any]) -> None: ...
    def list_uploads(self) -> AsyncIterator[tuple[str, float]]: ...

    # blobs
    async def stat(self, digest: str) -> BlobInfo | None: ...
    def read(self, digest: str, offset: int = 0, length: int | None = None) -> AsyncIterator[bytes]: ...
    async def delete(self, digest: str) -> bool: ...
    def list_blobs(self) -> AsyncIterator[BlobInfo]: ...
    async def redirect_url(self, digest: str, method: str) -> str | None: ...


def check_digest(digest: str) -> None:
    if not DIGEST_PATH_RE.fullmatch(digest):
        raise ValueError(f"not a storable digest: {digest!r}")


def check_upload_id(upload_id: str) -> None:
    if not UPLOAD_ID_RE.fullmatch(upload_id):
        raise ValueError(f"not an upload id: {upload_id!r}")
