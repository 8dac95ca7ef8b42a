"""Blobs as repositories see them: a blob is visible only where it is linked."""

from __future__ import annotations

from collections.abc import AsyncIterator

from sqlalchemy import Connection, bindparam, delete, select

from registry.errors import BlobUnknown, Unsupported
from registry.metadata.db import Database, utcnow
from registry.metadata.schema import blobs, repositories, repository_blobs
from registry.model.context import Registry
from registry.model.repositories import repository_id_in
from storage.base import BlobNotFound

_LINKED_SIZE = (
    select(blobs.c.size)
    .select_from(
        repository_blobs.join(repositories, repositories.c.id == repository_blobs.c.repository_id).join(
            blobs, blobs.c.digest == repository_blobs.c.digest
        )
    )
    .where(repositories.c.name == bindparam("repo"), repository_blobs.c.digest == bindparam("digest"))
)
_UNLINK = delete(repository_blobs).where(
    repository_blobs.c.repository_id == bindparam("repo_id"), repository_blobs.c.digest == bindparam("digest")
)


def _linked_size(conn: Connection, repo: str, digest: str) -> int | None:
    return conn.execute(_LINKED_SIZE, {"repo": repo, "digest": digest}).scalar()


async def linked_blob_size(reg: Registry, repo: str, digest: str) -> int | None:
    key = ("blob", digest)
    cached = reg.cache.get(repo, key)
    if cached is not None:
        return cached
    stamp = reg.cache.stamp(repo)
    size = await reg.db.read(_linked_size, repo, digest)
    if size is not None:
        reg.cache.put(repo, key, size, stamp)
    return size


async def blob_size(reg: Registry, repo: str, digest: str) -> int:
    size = await linked_blob_size(reg, repo, digest)
    if size is None:
        raise BlobUnknown(detail={"digest": digest})
    return size


async def read_blob(reg: Registry, digest: str, offset: int, length: int) -> AsyncIterator[bytes]:
    """Stream a blob whose link was already checked. The first chunk is fetched before
    returning, so a blob missing from storage still becomes a clean BLOB_UNKNOWN."""
    stream = reg.storage.read(digest, offset, length)
    try:
        first = await anext(stream, b"")
    except BlobNotFound:
        raise BlobUnknown("blob is recorded but missing from storage", detail={"digest": digest}) from None

    async def chained() -> AsyncIterator[bytes]:
        try:
            if first:
                yield first
            async for chunk in stream:
                yield chunk
        finally:
            await stream.aclose()

    return chained()


def local_path(reg: Registry, digest: str) -> str | None:
    """Where the blob lies on a local filesystem, for drivers that have one."""
    locate = getattr(reg.storage, "local_path", None)
    return locate(digest) if locate is not None else None


async def redirect_url(reg: Registry, digest: str, method: str) -> str | None:
    return await reg.storage.redirect_url(digest, method)


def link_blob(db: Database, conn: Connection, repo_id: int, digest: str, size: int) -> None:
    """Record a stored blob and make it visible in a repository (inside a write transaction)."""
    now = utcnow()
    conn.execute(db.insert_ignore(blobs, "digest"), {"digest": digest, "size": size, "created_at": now})
    conn.execute(
        db.insert_ignore(repository_blobs, "repository_id", "digest"),
        {"repository_id": repo_id, "digest": digest, "created_at": now},
    )


def _unlink(conn: Connection, repo: str, digest: str) -> int:
    repo_id = repository_id_in(conn, repo)
    if repo_id is None:
        return 0
    return conn.execute(_UNLINK, {"repo_id": repo_id, "digest": digest}).rowcount


async def unlink_blob(reg: Registry, repo: str, digest: str) -> None:
    """Remove a blob from one repository. Storage is reclaimed later by garbage collection."""
    if not reg.config.storage.delete_enabled:
        raise Unsupported("deletes are disabled on this registry")
    if not await reg.db.write(_unlink, repo, digest):
        raise BlobUnknown(detail={"digest": digest})
    await reg.cache.changed(repo)
