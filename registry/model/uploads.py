"""Blob upload sessions: start, append (PATCH), finish (PUT), cancel, mount, purge.

Session state (size, running hash, driver state) lives in the database, so any
request of a session may reach any worker or replica. Appends to one session
are serialised by an upload lock; the bytes are hashed while they arrive and
the common single-PATCH upload never reads its blob back.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import Connection, bindparam, delete, select, update

from registry.errors import (
    BlobUploadInvalid,
    BlobUploadUnknown,
    DigestInvalid,
    RangeInvalid,
    SizeInvalid,
    Unavailable,
)
from registry.hashing import Hasher, new_hasher
from registry.locks import upload_lock
from registry.metadata.db import utcnow
from registry.metadata.schema import blobs, repositories, repository_blobs, uploads
from registry.model import events
from registry.model.blobs import link_blob, reserve_blob
from registry.model.context import Registry
from registry.model.streams import ensure_stream, record_and_stamp, stream_added
from registry.names import split_digest
from storage.base import BlobNotFound, StorageError, StorageFull

log = logging.getLogger("okura.uploads")
# Upload data untouched this long, with no live writer, belongs to a writer that died.
RECLAIM_IDLE_SECONDS = 30.0


# distribution reports blob events with this media type (it does not know a blob's own).
BLOB_MEDIA_TYPE = "application/octet-stream"


@dataclass
class UploadState:
    id: str
    size: int
    hash_state: bytes | None
    driver_state: dict[str, Any]


@dataclass(frozen=True)
class ContentRange:
    start: int
    end: int  # inclusive

    @property
    def length(self) -> int:
        return self.end - self.start + 1


class BodyIncomplete(Exception):
    """The request body ended before its declared length."""


# -- sessions --------------------------------------------------------------------------------


async def start_upload(reg: Registry, repo: str) -> str:
    upload_id = str(uuid.uuid4())
    driver_state = await reg.storage.start_upload(upload_id)

    def record(conn: Connection) -> None:
        now = utcnow()
        repo_id, created, _, _ = ensure_stream(reg.db, conn, repo)
        conn.execute(
            _INSERT_UPLOAD,
            {
                "id": upload_id,
                "repository_id": repo_id,
                "size": 0,
                "hash_state": None,
                "driver_state": driver_state,
                "created_at": now,
                "updated_at": now,
            },
        )
        if created:
            record_and_stamp(reg.db, conn, repo_id, [stream_added(repo)])

    try:
        await reg.db.write(record)
    except BaseException:
        await reg.storage.cancel_upload(upload_id, driver_state)
        raise
    return upload_id


_SELECT_UPLOAD = (
    select(uploads.c.size, uploads.c.hash_state, uploads.c.driver_state)
    .select_from(uploads.join(repositories, repositories.c.id == uploads.c.repository_id))
    .where(uploads.c.id == bindparam("upload_id"), repositories.c.name == bindparam("repo"))
)
_INSERT_UPLOAD = uploads.insert()
_DELETE_UPLOAD = delete(uploads).where(uploads.c.id == bindparam("upload_id"))
_RECORD_APPEND = (
    update(uploads)
    .where(uploads.c.id == bindparam("upload_id"), uploads.c.size == bindparam("old_size"))
    .values(
        size=bindparam("size"),
        hash_state=bindparam("hash_state"),
        driver_state=bindparam("driver_state"),
        updated_at=bindparam("now"),
    )
)


def _select_upload(conn: Connection, repo: str, upload_id: str) -> Any:
    return conn.execute(_SELECT_UPLOAD, {"upload_id": upload_id, "repo": repo}).first()


async def _load(reg: Registry, repo: str, upload_id: str) -> UploadState:
    row = await reg.db.read(_select_upload, repo, upload_id)
    if row is None:
        raise BlobUploadUnknown(detail={"uuid": upload_id})
    return UploadState(upload_id, row.size, row.hash_state, row.driver_state or {})


def _delete_upload(conn: Connection, upload_id: str) -> None:
    conn.execute(_DELETE_UPLOAD, {"upload_id": upload_id})


async def upload_size(reg: Registry, repo: str, upload_id: str) -> int:
    return (await _load(reg, repo, upload_id)).size


async def cancel_upload(reg: Registry, repo: str, upload_id: str) -> None:
    async with upload_lock(reg, upload_id):
        state = await _load(reg, repo, upload_id)
        await reg.db.write(_delete_upload, upload_id)
        await reg.storage.cancel_upload(upload_id, state.driver_state)


# -- appending ---------------------------------------------------------------------------------


async def _coalesce(body: AsyncIterator[bytes], size: int) -> AsyncIterator[bytes]:
    """Regroup the small chunks the server receives into large buffers: per-call costs
    of hashing and writing are then negligible."""
    parts: list[bytes] = []
    pending = 0
    async for chunk in body:
        if not chunk:
            continue
        parts.append(chunk)
        pending += len(chunk)
        if pending >= size:
            yield parts[0] if len(parts) == 1 else b"".join(parts)
            parts, pending = [], 0
    if parts:
        yield parts[0] if len(parts) == 1 else b"".join(parts)


async def _ingest(
    body: AsyncIterator[bytes], hasher: Hasher | None, write: Callable[[bytes], Awaitable[None]], buffer_size: int
) -> int:
    """Hash and write each buffer in worker threads while the next one is received."""
    total = 0
    pending: Awaitable[Any] | None = None
    try:
        async for data in _coalesce(body, buffer_size):
            if pending is not None:
                await pending
            total += len(data)
            if hasher is not None:
                pending = asyncio.gather(asyncio.to_thread(hasher.update, data), write(data))
            else:
                pending = asyncio.ensure_future(write(data))
        if pending is not None:
            await pending
            pending = None
    finally:
        if pending is not None:
            await asyncio.gather(pending, return_exceptions=True)  # never leave a thread writing
    return total


async def _append(
    reg: Registry, state: UploadState, body: AsyncIterator[bytes], expected_length: int | None, record: bool = True
) -> UploadState:
    """Append a request body to the session and, unless the same request is about to
    commit it, record the new size and hash state."""
    try:
        hasher: Hasher | None = (
            new_hasher("sha256", state.hash_state) if (state.hash_state is not None or state.size == 0) else None
        )
    except ValueError:
        hasher = None
    try:
        writer = await reg.storage.upload_writer(state.id, state.driver_state, state.size)
    except BlobNotFound:
        raise BlobUploadUnknown("upload data is gone", detail={"uuid": state.id}) from None
    except StorageFull:
        raise
    except StorageError as e:
        log.warning("upload %s cannot be resumed: %s", state.id, e)
        raise BlobUploadInvalid(
            "the upload's data cannot be resumed; start a new upload", detail={"uuid": state.id}
        ) from None
    try:
        received = await _ingest(body, hasher, writer.write, reg.config.uploads.chunk_buffer)
        if expected_length is not None and received != expected_length:
            raise SizeInvalid(
                f"received {received} bytes, expected {expected_length}",
                detail={"uuid": state.id, "received": received, "expected": expected_length},
            )
        driver_state = await writer.finish()
    except BaseException:
        # Bytes written past the recorded size are dropped by the next writer.
        await writer.abort()
        raise
    if received == 0:
        return state
    new = UploadState(state.id, state.size + received, hasher.state() if hasher is not None else None, driver_state)
    if not record:
        return new

    def save(conn: Connection) -> int:
        return conn.execute(
            _RECORD_APPEND,
            {
                "upload_id": state.id,
                "old_size": state.size,
                "size": new.size,
                "hash_state": new.hash_state,
                "driver_state": new.driver_state,
                "now": utcnow(),
            },
        ).rowcount

    if not await reg.db.write(save):
        raise BlobUploadUnknown("upload was cancelled or changed concurrently", detail={"uuid": state.id})
    return new


async def append_chunk(
    reg: Registry,
    repo: str,
    upload_id: str,
    body: AsyncIterator[bytes],
    content_range: ContentRange | None,
    content_length: int | None,
) -> int:
    """PATCH: append one chunk; returns the new size. An out-of-order chunk raises
    RANGE_INVALID (416) and leaves the session usable."""
    async with upload_lock(reg, upload_id):
        state = await _load(reg, repo, upload_id)
        expected = content_length
        if content_range is not None:
            if content_range.start != state.size:
                raise RangeInvalid(
                    f"chunk starts at {content_range.start}, upload has {state.size} bytes",
                    detail={"uuid": upload_id, "size": state.size},
                    headers=_range_headers(repo, upload_id, state.size),
                )
            if content_length is not None and content_length != content_range.length:
                raise SizeInvalid("Content-Length does not match Content-Range", detail={"uuid": upload_id})
            expected = content_range.length
        state = await _append(reg, state, body, expected)
        return state.size


def _range_headers(repo: str, upload_id: str, size: int) -> dict[str, str]:
    return {
        "Location": f"/v2/{repo}/blobs/uploads/{upload_id}",
        "Range": f"0-{max(size - 1, 0)}",
        "Docker-Upload-UUID": upload_id,
    }


async def _verify_digest(reg: Registry, state: UploadState, digest: str) -> None:
    algorithm, encoded = split_digest(digest)
    actual: str | None = None
    if algorithm == "sha256" and (state.hash_state is not None or state.size == 0):
        actual = new_hasher("sha256", state.hash_state).hexdigest()
    else:
        # Rare: another algorithm, or no resumable state. Read the upload back once.
        hasher = new_hasher(algorithm)
        async for chunk in reg.storage.read_upload(state.id, state.driver_state):
            await asyncio.to_thread(hasher.update, chunk)
        actual = hasher.hexdigest()
    if actual != encoded:
        raise DigestInvalid(detail={"expected": digest, "actual": f"{algorithm}:{actual}"})


async def finish_upload(
    reg: Registry,
    repo: str,
    upload_id: str,
    digest: str,
    body: AsyncIterator[bytes] | None,
    content_length: int | None,
    content_range: ContentRange | None = None,
) -> int:
    """PUT ?digest=: append an optional last chunk, verify the digest and commit.
    Returns the blob size. On a digest mismatch nothing is stored and the session ends."""
    async with upload_lock(reg, upload_id):
        state = await _load(reg, repo, upload_id)
        if content_range is not None and content_range.start != state.size:
            raise RangeInvalid(
                f"chunk starts at {content_range.start}, upload has {state.size} bytes",
                headers=_range_headers(repo, upload_id, state.size),
            )
        if body is not None:
            state = await _append(reg, state, body, content_length, record=False)
        try:
            await _verify_digest(reg, state, digest)
        except DigestInvalid:
            await _discard(reg, state)
            raise
        await _commit(reg, repo, state, digest)
        return state.size


async def _discard(reg: Registry, state: UploadState) -> None:
    await reg.db.write(_delete_upload, state.id)
    await reg.storage.cancel_upload(state.id, state.driver_state)


async def _commit(reg: Registry, repo: str, state: UploadState, digest: str) -> None:
    await reserve_blob(reg, digest, state.size)
    try:
        await reg.storage.commit_upload(state.id, state.driver_state, digest, state.size)
    except BlobNotFound:
        # A crash after the move but before the database was updated leaves exactly this:
        # the blob in place, the session still recorded. The digest was already verified
        # against the session's hash state, so finishing the commit is safe.
        info = await reg.storage.stat(digest)
        if info is None or info.size != state.size:
            raise BlobUploadUnknown("upload data is gone", detail={"uuid": state.id}) from None
    # Storage first, metadata second: a crash in between leaves an unreferenced blob
    # (collected later), never metadata pointing at nothing.

    def record(conn: Connection) -> bool:
        repo_id, created, _, _ = ensure_stream(reg.db, conn, repo)
        if not link_blob(reg.db, conn, repo_id, digest, state.size):
            return False
        _delete_upload(conn, state.id)
        pushed = [events.Event(events.PUSH, repo, BLOB_MEDIA_TYPE, digest, state.size)]
        record_and_stamp(reg.db, conn, repo_id, [stream_added(repo)] if created else [], pushed)
        return True

    if not await reg.db.write(record):
        # Only with a grace period shorter than this commit took: the collector took it.
        raise Unavailable("the blob was garbage collected while it was stored; retry", detail={"digest": digest})


async def monolithic_upload(
    reg: Registry, repo: str, digest: str, body: AsyncIterator[bytes], content_length: int | None
) -> int:
    """POST ?digest=: the whole blob in one request. No session is recorded: nobody else
    can address it, and upload data a crash leaves behind is purged by age."""
    upload_id = str(uuid.uuid4())
    state = UploadState(upload_id, 0, None, await reg.storage.start_upload(upload_id))
    try:
        state = await _append(reg, state, body, content_length, record=False)
        await _verify_digest(reg, state, digest)
        await _commit(reg, repo, state, digest)
    except BaseException:
        with contextlib.suppress(Exception):
            await reg.storage.cancel_upload(upload_id, state.driver_state)
        raise
    return state.size


# -- mounting ----------------------------------------------------------------------------------


_SOURCE_LINK = (
    select(repository_blobs.c.digest)
    .select_from(repository_blobs.join(repositories, repositories.c.id == repository_blobs.c.repository_id))
    .where(repositories.c.name == bindparam("repo"), repository_blobs.c.digest == bindparam("digest"))
)


async def mount_blob(
    reg: Registry, repo: str, digest: str, source: str | None, may_read: Callable[[str], Awaitable[bool]]
) -> int | None:
    """Link a blob from another repository. With no source, any repository the caller may
    read is a candidate. Returns the size, or None when the caller must upload instead."""
    query = (
        select(repositories.c.name, blobs.c.size)
        .select_from(
            repository_blobs.join(repositories, repositories.c.id == repository_blobs.c.repository_id).join(
                blobs, blobs.c.digest == repository_blobs.c.digest
            )
        )
        .where(repository_blobs.c.digest == digest)
        .limit(50)
    )
    if source is not None:
        query = query.where(repositories.c.name == source)
    rows = await reg.db.read(lambda conn: conn.execute(query).all())
    for row in rows:
        if row.name == repo or await may_read(row.name):

            def link(conn: Connection, size: int = row.size, source_repo: str = row.name) -> bool:
                # The source link again, in this transaction and under the GC lock: the
                # collector may have taken it since the read (a linked blob is never collected).
                reg.db.gc_shared(conn)
                if conn.execute(_SOURCE_LINK, {"repo": source_repo, "digest": digest}).first() is None:
                    return False
                repo_id, created, _, _ = ensure_stream(reg.db, conn, repo)
                if not link_blob(reg.db, conn, repo_id, digest, size):
                    return False
                mounted = events.Event(events.MOUNT, repo, BLOB_MEDIA_TYPE, digest, size, from_repository=source_repo)
                record_and_stamp(reg.db, conn, repo_id, [stream_added(repo)] if created else [], [mounted])
                return True

            # A blob the collector is deleting cannot be mounted: the client uploads it.
            return row.size if await reg.db.write(link) else None
    return None


# -- purging -----------------------------------------------------------------------------------


async def purge_stale_uploads(reg: Registry, max_age: float) -> int:
    """Remove sessions idle for longer than `max_age` seconds, and upload data that no
    session records (left by a crash between storage and database)."""
    cutoff = utcnow() - timedelta(seconds=max_age)

    def scan(conn: Connection) -> tuple[list[Any], set[str]]:
        stale = conn.execute(select(uploads.c.id, uploads.c.driver_state).where(uploads.c.updated_at < cutoff)).all()
        return stale, set(conn.execute(select(uploads.c.id)).scalars())

    def remove_if_stale(conn: Connection, upload_id: str) -> int:
        return conn.execute(delete(uploads).where(uploads.c.id == upload_id, uploads.c.updated_at < cutoff)).rowcount

    def exists(conn: Connection, upload_id: str) -> bool:
        return conn.execute(select(uploads.c.id).where(uploads.c.id == upload_id)).first() is not None

    stale, known = await reg.db.read(scan)
    purged = 0
    for row in stale:
        async with upload_lock(reg, row.id):
            if await reg.db.write(remove_if_stale, row.id):
                await reg.storage.cancel_upload(row.id, row.driver_state or {})
                purged += 1
    async for upload_id, modified in reg.storage.list_uploads():
        if upload_id in known or modified > cutoff.timestamp():
            continue
        if not await reg.db.read(exists, upload_id):
            await reg.storage.cancel_upload(upload_id, {})
            purged += 1
    if purged:
        log.info("purged stale uploads", extra={"count": purged})
    return purged


async def reclaim_abandoned_uploads(reg: Registry, idle: float = RECLAIM_IDLE_SECONDS) -> int:
    """Give back the bytes of writers that died (kill -9, a crash): a session's data past its
    recorded size, and upload data no session records (a monolithic upload cut short, idle
    for `idle` seconds: a live one is between its last write and its commit for moments).
    Data a live writer holds is never touched, and a session is trimmed under its upload
    lock, so no request of it is appending meanwhile. Returns how many uploads were
    reclaimed. Storage that cannot tell live writers (S3) is left to the age-based purge."""
    in_use = getattr(reg.storage, "upload_in_use", None)
    if in_use is None:
        return 0
    cutoff = time.time() - idle  # file times are the system's, whatever the registry clock says
    reclaimed = 0
    async for upload_id, modified in reg.storage.list_uploads():
        if await in_use(upload_id):
            continue
        async with upload_lock(reg, upload_id):
            recorded = await reg.db.read(_session_size, upload_id)
            if recorded is not None:
                done = await reg.storage.trim_upload(upload_id, recorded) > 0  # type: ignore[attr-defined]
            elif modified < cutoff and not await in_use(upload_id):
                await reg.storage.cancel_upload(upload_id, {})
                done = True
            else:
                done = False
        if done:
            reclaimed += 1
            log.info("reclaimed abandoned upload data", extra={"upload": upload_id, "session": recorded is not None})
    return reclaimed


def _session_size(conn: Connection, upload_id: str) -> int | None:
    return conn.execute(select(uploads.c.size).where(uploads.c.id == upload_id)).scalar()
