"""Pull-through: blobs of imported images come from their upstream on first request.

An imported manifest records the upstream repository its blobs live in. A blob such a
manifest references but this registry does not hold is streamed from there to the client
while it is written to storage; once the upstream's bytes hashed to the digest, the blob is
committed and linked, and later pulls are local. One writer per digest: across replicas a
database lease, within a process a set of digests in flight; a request that is not the
writer streams without storing. Nothing unverified ever becomes visible: a digest mismatch
or a stall cancels the upload and cuts the client's response short (its own digest check
fails, and it retries).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import select

from registry.errors import BlobUnknown, Unavailable
from registry.imports import lazy_module
from registry.metadata import leases
from registry.metadata.schema import manifest_blobs, manifests, repositories
from registry.metrics import pullthrough_bytes, pullthrough_cache_requests, pullthrough_duration, pullthrough_errors
from registry.model import blobs
from registry.model.context import Registry
from registry.model.import_fetch import keyring_for, upstream_client

if TYPE_CHECKING:
    from registry.imports import upstream as up
else:
    up = lazy_module("registry.imports.upstream")  # httpx only once something is fetched

log = logging.getLogger("okura.pullthrough")

LEASE_TTL = 120.0  # seconds; renewed while the blob streams
LEASE_RENEW = 30.0
_in_flight: set[str] = set()  # digests this process is storing


@dataclass(frozen=True)
class RemoteBlob:
    repository: str  # the local repository asked
    digest: str
    size: int
    upstream: str  # host/path of the upstream repository
    insecure: bool

    @property
    def registry(self) -> str:
        return self.upstream.partition("/")[0]


def _descriptor_size(content: bytes, digest: str) -> int | None:
    try:
        document = json.loads(content)
    except ValueError:
        return None
    if not isinstance(document, dict):
        return None
    candidates = [document.get("config"), *(document.get("layers") or [])]
    for d in candidates:
        if isinstance(d, dict) and d.get("digest") == digest and isinstance(d.get("size"), int):
            return int(d["size"])
    return None


async def find(reg: Registry, repository: str, digest: str) -> RemoteBlob | None:
    """The upstream of a blob an imported manifest of `repository` references, or None."""
    query = (
        select(manifests.c.content, manifests.c.upstream, manifests.c.upstream_insecure)
        .select_from(
            manifest_blobs.join(manifests, manifests.c.id == manifest_blobs.c.manifest_id).join(
                repositories, repositories.c.id == manifests.c.repository_id
            )
        )
        .where(
            repositories.c.name == repository,
            repositories.c.deleted_at.is_(None),
            manifest_blobs.c.digest == digest,
            manifests.c.upstream.is_not(None),
        )
        .order_by(manifests.c.id.desc())
        .limit(5)
    )
    rows = await reg.db.read(lambda conn: conn.execute(query).all())
    for row in rows:
        size = _descriptor_size(bytes(row.content), digest)
        if size is not None:
            return RemoteBlob(repository, digest, size, row.upstream, bool(row.upstream_insecure))
    return None


async def local_copy(reg: Registry, remote: RemoteBlob) -> bool:
    """Link the blob when this registry already stores it (another repository pulled or
    pushed it): then no upstream is needed. True when linked."""
    size = await blobs.stored_size(reg, remote.digest)
    if size is None or size != remote.size:
        return False
    if await blobs.link_existing(reg, remote.repository, remote.digest, size):
        pullthrough_cache_requests.labels("Hit").inc()
        return True
    return False


def _fail(remote: RemoteBlob, error: up.UpstreamError, operation: str) -> Exception:
    code = type(error).__name__
    pullthrough_errors.labels(remote.registry, operation, code).inc()
    log.warning(
        "pull-through failed",
        extra={
            "repository": remote.repository,
            "digest": remote.digest,
            "upstream": remote.upstream,
            "error": str(error),
        },
    )
    if isinstance(error, up.UpstreamNotFound):
        return BlobUnknown(f"not in this registry, and {error}", detail={"digest": remote.digest})
    return Unavailable(f"pull-through from {remote.upstream} failed: {error}", detail={"digest": remote.digest})


async def open_stream(reg: Registry, remote: RemoteBlob) -> AsyncIterator[bytes]:
    """The blob's bytes from upstream, stored on the way when this request is the writer.
    The upstream answered before this returns, so its refusals become clean OCI errors."""
    keyring = await keyring_for(reg, remote.repository.partition("/")[0])
    ref = up.ImageRef.parse(f"{remote.upstream}@{remote.digest}")
    client = upstream_client(reg, keyring, ref, remote.insecure)
    started = time.monotonic()
    stack = contextlib.AsyncExitStack()
    try:
        await stack.enter_async_context(client)
        stream = await stack.enter_async_context(client.blob(ref.repository, remote.digest))
    except up.UpstreamError as e:
        await stack.aclose()
        raise _fail(remote, e, "blob") from None
    except BaseException:
        await stack.aclose()
        raise
    if stream.size is not None and stream.size != remote.size:
        await stack.aclose()
        raise _fail(
            remote, up.UpstreamError(stream.shown, f"sent {stream.size} bytes, the manifest says {remote.size}"), "blob"
        )
    pullthrough_cache_requests.labels("Miss").inc()
    writer = await _take_writer(reg, remote)
    return _relay(reg, remote, stream, stack, writer, started)


@dataclass
class _Writer:
    upload_id: str
    state: dict[str, Any]
    sink: Any  # storage UploadWriter
    lease: str


async def _take_writer(reg: Registry, remote: RemoteBlob) -> _Writer | None:
    """Become the one writer of this digest, or None when another request (here or on
    another replica) is already storing it, or the registry is read-only (then it relays only)."""
    if remote.digest in _in_flight or reg.settings.current.read_only:
        return None
    lease = "pull:" + remote.digest.partition(":")[2][:58]
    if not await leases.acquire(reg.db, lease, ttl=LEASE_TTL):
        return None
    _in_flight.add(remote.digest)
    upload_id = str(uuid.uuid4())
    try:
        state = await reg.storage.start_upload(upload_id)
        sink = await reg.storage.upload_writer(upload_id, state, 0)
    except BaseException:
        _in_flight.discard(remote.digest)
        await leases.release(reg.db, lease)
        raise
    return _Writer(upload_id, state, sink, lease)


async def _relay(
    reg: Registry,
    remote: RemoteBlob,
    stream: up.BlobStream,
    stack: contextlib.AsyncExitStack,
    writer: _Writer | None,
    started: float,
) -> AsyncIterator[bytes]:
    received = 0
    renewed = time.monotonic()
    committed = False
    held = b""  # the last chunk goes out only once the bytes are verified: a client never has them all if wrong
    writing: asyncio.Future[None] | None = None  # the previous chunk's write, overlapping the next read and send
    try:
        async for chunk in stream:
            received += len(chunk)
            if writer is not None:
                if writing is not None:
                    await writing
                writing = asyncio.ensure_future(writer.sink.write(chunk))
                if time.monotonic() - renewed > LEASE_RENEW:
                    await leases.acquire(reg.db, writer.lease, ttl=LEASE_TTL)
                    renewed = time.monotonic()
            if held:
                yield held
            held = chunk
        # The stream raised DigestMismatch by now if the bytes were wrong.
        if received != remote.size:
            raise up.UpstreamError(stream.shown, f"sent {received} bytes, the manifest says {remote.size}")
        if writer is not None:  # stored before the client has it all: its next pull is local
            if writing is not None:
                await writing
                writing = None
            writer.state = await writer.sink.finish()
            await blobs.store_verified(reg, writer.upload_id, writer.state, remote.digest, received, remote.repository)
            committed = True
        if held:
            yield held
        pullthrough_bytes.labels(remote.registry).inc(received)
        pullthrough_duration.labels(remote.registry, "blob").observe(time.monotonic() - started)
        log.info(
            "pull-through",
            extra={
                "repository": remote.repository,
                "digest": remote.digest,
                "upstream": remote.upstream,
                "bytes": received,
                "stored": committed,
            },
        )
    except up.UpstreamError as e:
        # Headers are out: the only way left to say so is to cut the body short.
        raise _fail(remote, e, "blob") from None
    finally:
        if writing is not None:  # a failure mid-way: let the last write settle before aborting
            with contextlib.suppress(Exception):
                await writing
        if writer is not None:
            if not committed:
                with contextlib.suppress(Exception):
                    await writer.sink.abort()
                with contextlib.suppress(Exception):
                    await reg.storage.cancel_upload(writer.upload_id, writer.state)
            _in_flight.discard(remote.digest)
            with contextlib.suppress(Exception):
                await leases.release(reg.db, writer.lease)
        await stack.aclose()


async def fetch_to_storage(reg: Registry, remote: RemoteBlob) -> bool:
    """Store the blob without a client reading it (a range request wants it local first).
    True when it is local now."""
    if await local_copy(reg, remote):
        return True
    async for _ in await open_stream(reg, remote):
        pass
    return await blobs.stored_size(reg, remote.digest) is not None
