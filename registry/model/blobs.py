"""Blobs as repositories see them: a blob is visible only where it is linked."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

from sqlalchemy import Connection, bindparam, delete, select, update

from registry.errors import BlobUnknown, Unavailable, Unsupported
from registry.metadata.db import Database, as_utc, utcnow
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


async def small_blob(reg: Registry, digest: str, size: int) -> bytes | None:
    """The whole blob from the in-memory cache of small blobs, loading it on a miss;
    None when the blob is not cached (too big, or storage is local)."""
    if reg.content is None or not reg.content.holds(size):
        return None

    async def load() -> bytes:
        parts = [chunk async for chunk in await read_blob(reg, digest, 0, size)]
        data = b"".join(parts)
        if len(data) != size:
            raise BlobUnknown("blob in storage does not match its recorded size", detail={"digest": digest})
        return data

    return await reg.content.get(digest, load)


def local_path(reg: Registry, digest: str) -> str | None:
    """Where the blob lies on a local filesystem, for drivers that have one."""
    locate = getattr(reg.storage, "local_path", None)
    return locate(digest) if locate is not None else None


async def redirect_url(reg: Registry, digest: str, method: str) -> str | None:
    """A presigned storage URL to send the client to, or None to serve the bytes here (always,
    with the Config resource's disableRedirect)."""
    if reg.settings.current.disable_redirect:
        return None
    return await reg.storage.redirect_url(digest, method)


# -- online GC protocol (see registry/pruning/gc.py) ----------------------------------------

_CLAIM = select(blobs.c.deleting_since).where(blobs.c.digest == bindparam("digest"))
_MARK_PENDING = (
    update(blobs)
    .where(blobs.c.digest == bindparam("d"), blobs.c.deleting_since.is_(None))
    .values(pending_since=bindparam("now"))
)
CLAIM_WAIT = 30.0  # seconds a writer waits for the collector to finish deleting a blob
STALE_CLAIM = timedelta(minutes=10)  # a claim this old was left by a collector that died


def _reserve(conn: Connection, db: Database, digest: str, size: int) -> Any:
    """Before storing a blob, under the GC lock: give it a row (new, or the existing one)
    marked pending. Returns the claim time when the collector is deleting it, else None."""
    db.gc_shared(conn)
    now = utcnow()
    row = conn.execute(_CLAIM, {"digest": digest}).first()
    if row is None:
        conn.execute(
            db.insert_ignore(blobs, "digest"),
            {"digest": digest, "size": size, "created_at": now, "pending_since": now},
        )
        return None
    if row.deleting_since is None:
        conn.execute(_MARK_PENDING, {"d": digest, "now": now})
    return row.deleting_since


async def reserve_blob(reg: Registry, digest: str, size: int) -> None:
    """Before a blob is written to storage: protect it from the collector for the grace
    period. A blob the collector is deleting is waited for, then stored afresh: a push
    that races a delete rewrites the blob instead of pointing at a file about to go."""
    deadline = time.monotonic() + CLAIM_WAIT
    while True:
        claimed = await reg.db.write(_reserve, reg.db, digest, size)
        if claimed is None:
            return
        if as_utc(claimed) < utcnow() - STALE_CLAIM:
            await finish_claim(reg, digest, claimed)
            continue
        if time.monotonic() > deadline:
            raise Unavailable("the blob is being garbage collected; retry the upload", detail={"digest": digest})
        await asyncio.sleep(0.2)


async def finish_claim(reg: Registry, digest: str, claimed: Any) -> None:
    """Complete a collector's claim: storage first, then the row (only if still that claim)."""
    await reg.storage.delete(digest)

    def drop(conn: Connection) -> None:
        reg.db.gc_exclusive(conn)
        conn.execute(delete(blobs).where(blobs.c.digest == digest, blobs.c.deleting_since == claimed))

    await reg.db.write(drop)


def link_blob(db: Database, conn: Connection, repo_id: int, digest: str, size: int) -> bool:
    """Make a stored blob visible in a repository (inside a write transaction), pending
    until a manifest references it. False when the collector has claimed the blob or already
    deleted it: every writer reserves the row before storing (reserve_blob), so a missing row
    means the file is gone too, and recreating the row would point at nothing."""
    db.gc_shared(conn)
    row = conn.execute(_CLAIM, {"digest": digest}).first()
    if row is None or row.deleting_since is not None:
        return False
    now = utcnow()
    conn.execute(
        db.upsert(repository_blobs, ("repository_id", "digest"), ("pending_since",)),
        {"repository_id": repo_id, "digest": digest, "created_at": now, "pending_since": now},
    )
    return True


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


# -- blobs fetched from elsewhere (imports, pull-through) -----------------------------------


def link_referenced_blob(db: Database, conn: Connection, repo_id: int, digest: str, size: int) -> bool:
    """Link a stored blob that a manifest of the repository already references (an imported
    one): not pending, since nothing is awaited. False when the collector has claimed it."""
    if not link_blob(db, conn, repo_id, digest, size):
        return False
    conn.execute(
        update(repository_blobs)
        .where(repository_blobs.c.repository_id == repo_id, repository_blobs.c.digest == digest)
        .values(pending_since=None)
    )
    conn.execute(update(blobs).where(blobs.c.digest == digest).values(pending_since=None))
    return True


async def store_verified(
    reg: Registry, upload_id: str, driver_state: dict[str, Any], digest: str, size: int, repo: str
) -> None:
    """Commit upload data whose digest the caller verified, and link it to `repo`, whose
    manifests reference it. Storage first, metadata second, as for a push."""
    await reserve_blob(reg, digest, size)
    try:
        await reg.storage.commit_upload(upload_id, driver_state, digest, size)
    except BlobNotFound:
        info = await reg.storage.stat(digest)
        if info is None or info.size != size:
            raise
    await link_existing(reg, repo, digest, size)


async def link_existing(reg: Registry, repo: str, digest: str, size: int) -> bool:
    """Link a blob already in storage to `repo`; False when it is not (or is being collected)."""

    def link(conn: Connection) -> bool:
        repo_id = repository_id_in(conn, repo)
        return repo_id is not None and link_referenced_blob(reg.db, conn, repo_id, digest, size)

    if await reg.db.write(link):
        await reg.cache.changed(repo)
        return True
    return False


async def stored_size(reg: Registry, digest: str) -> int | None:
    """The size of a blob this registry holds in storage (in any repository), or None."""
    row = await reg.db.read(
        lambda conn: conn.execute(
            select(blobs.c.size, blobs.c.deleting_since, blobs.c.pending_since).where(blobs.c.digest == digest)
        ).first()
    )
    if row is None or row.deleting_since is not None:
        return None
    info = await reg.storage.stat(digest)
    return info.size if info is not None and info.size == row.size else None
