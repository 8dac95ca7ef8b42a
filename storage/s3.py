"""S3 driver: content-addressed blobs under `<root_prefix>blobs/<alg>/<xx>/<hex>`, in-flight
uploads under `<root_prefix>uploads/<id>/`.

An upload session streams through one S3 multipart upload (`uploads/<id>/data`). Each writer
session (one PATCH) buffers at most one part in memory and uploads full parts as they fill.
What is left when it finishes (the "tail", always smaller than S3's 5 MiB minimum part) goes
to its own small object, `uploads/<id>/tail-<end offset>-<random>`, so that the next writer,
on any replica, reads it back and continues. Everything needed to continue lives in the
driver state the registry stores: the multipart UploadId, the completed parts (number,
ETag, size), and the tail's name, size and ETag. Writers never modify what an earlier state
references (tails have unique names; a part number written again gets a new ETag, which
CompleteMultipartUpload then tells apart), so a failed or concurrent writer can never
corrupt the state the registry keeps.

Committing completes the multipart upload (the tail becomes its last part, copied server
side) and copies the result to its content address server side; a session without parts
copies its tail object directly. Blobs already stored are never rewritten.

boto3 is synchronous: every call runs in a bounded thread pool, never on the event loop.

Waits are bounded (a stuck S3 must become a 503, never a hung request): boto3 gives each
attempt connect_timeout and read_timeout and makes at most max_attempts, and each call as a
whole gets call_timeout (retries, backoff and a queue for a free thread included). A call past
its deadline is given up as StorageUnavailable; its thread may go on waiting, but only until
read_timeout ends the attempt it is in (max_attempts x (connect_timeout + read_timeout) plus
backoff at worst), so stuck threads cannot starve the pool for good. A stream that receives
no byte for call_timeout fails the same way, even after its response started."""

from __future__ import annotations

import asyncio
import base64
import concurrent.futures
import contextlib
import dataclasses
import hashlib
import logging
import re
import secrets
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import boto3
import urllib3.exceptions
from botocore.config import Config as BotoConfig
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    HTTPClientError,
    IncompleteReadError,
    NoCredentialsError,
    PartialCredentialsError,
)
from botocore.exceptions import ConnectionError as BotoConnectionError

from storage.base import (
    DIGEST_PATH_RE,
    READ_CHUNK,
    UPLOAD_ID_RE,
    BlobInfo,
    BlobNotFound,
    StorageError,
    StorageMissing,
    StorageUnavailable,
    check_digest,
    check_upload_id,
)

# Reads from S3 go in 2 MiB chunks, one in flight ahead of the client (so at most 4 MiB
# per stream): measured here, 2 MiB needs ~20% less CPU per byte than 1 MiB and 256 KiB
# twice as much (thread hops and copies per chunk dominate).
S3_READ_CHUNK = 2 * READ_CHUNK
FIRST_READ = 64 << 10
log = logging.getLogger("okura.storage.s3")

MiB = 1 << 20
GiB = 1 << 30
MIN_PART = 5 * MiB  # S3's smallest part, except for the last one
MAX_PART = 5 * GiB  # S3's largest part, and the largest single CopyObject
MAX_PARTS = 10_000

_TAIL_RE = re.compile(r"^tail-(\d{16})-[0-9a-f]{16}$")
_MD5_RE = re.compile(r"^[0-9a-f]{32}$")
_NOT_FOUND = frozenset({"NoSuchKey", "NotFound", "404", "NoSuchUpload"})
_UNAVAILABLE = frozenset(
    {
        "SlowDown",
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "RequestThrottled",
        "RequestThrottledException",
        "TooManyRequests",
        "TooManyRequestsException",
        "RequestLimitExceeded",
        "ServiceUnavailable",
        "InternalError",
        "RequestTimeout",
        "RequestTimeoutException",
        "PriorRequestNotComplete",
    }
)
_STREAM_RETRIES = 3  # re-issued ranged GETs when a body stream breaks mid-way
# Server-side copies and completions may legitimately take minutes on large objects (S3 keeps
# the connection alive with whitespace meanwhile): no call deadline, read_timeout still ends
# them should S3 stop answering.
_SERVER_SIDE = frozenset({"copy_object", "upload_part_copy", "complete_multipart_upload"})
# Calls sending a body get call_timeout plus the time it takes at this rate, so that a large
# part on a slow link is not cut.
_MIN_SEND_RATE = 1 * 1024 * 1024  # bytes/s
_SESSION: boto3.session.Session | None = None  # shared: a client per driver, models loaded once
_SESSION_LOCK = threading.Lock()


class _Missing(BlobNotFound):
    """S3 answered NoSuchKey / NoSuchUpload / 404."""


class _InvalidRange(StorageError):
    pass


class _Timeout(StorageUnavailable):
    """A call, or a stream, went past its deadline."""


def _md5(data: bytes | memoryview) -> bytes:
    return hashlib.md5(data, usedforsecurity=False).digest()


def _etag_hex(etag: str) -> str:
    return etag.strip().strip('"').lower()


def _multipart_etag(etags: list[str]) -> str | None:
    """The ETag S3 gives an object completed from parts with these ETags, when they are MD5s."""
    hexes = [_etag_hex(e) for e in etags]
    if not hexes or not all(_MD5_RE.fullmatch(h) for h in hexes):
        return None
    return f"{hashlib.md5(b''.join(bytes.fromhex(h) for h in hexes), usedforsecurity=False).hexdigest()}-{len(hexes)}"


def _ranges(total: int, max_size: int) -> list[tuple[int, int]]:
    """Split [0, total) into equal inclusive ranges of at most max_size bytes (with max_size of
    at least 10 MiB, every range is at least S3's minimum part size)."""
    count = max(1, -(-total // max_size))
    step = -(-total // count)
    return [(start, min(start + step, total) - 1) for start in range(0, total, step)]


@dataclass
class _UploadState:
    """The driver state of one upload session (kept by the registry between requests)."""

    mpu: str | None = None  # UploadId of the multipart upload at uploads/<id>/data
    parts: list[tuple[int, str, int]] = field(default_factory=list)  # (PartNumber, ETag, size)
    tail: str | None = None  # name of the tail object under uploads/<id>/
    tail_size: int = 0
    tail_etag: str = ""  # the tail object's ETag (its MD5 on plain objects)

    @property
    def parts_size(self) -> int:
        return sum(p[2] for p in self.parts)

    @property
    def size(self) -> int:
        return self.parts_size + self.tail_size

    @property
    def empty(self) -> bool:
        return self.mpu is None and self.tail is None

    @classmethod
    def load(cls, state: dict[str, Any] | None) -> _UploadState:
        state = state or {}
        try:
            st = cls(
                mpu=state.get("mpu") or None,
                parts=[(int(n), str(etag), int(size)) for n, etag, size in state.get("parts") or []],
                tail=state.get("tail") or None,
                tail_size=int(state.get("tail_size") or 0),
                tail_etag=str(state.get("tail_etag") or ""),
            )
        except (TypeError, ValueError, AttributeError) as e:
            raise StorageError(f"unreadable S3 upload state: {e}") from None
        if st.mpu is not None and not isinstance(st.mpu, str):
            raise StorageError("unreadable S3 upload state: bad UploadId")
        if st.tail is not None and not _TAIL_RE.fullmatch(st.tail):
            raise StorageError(f"unreadable S3 upload state: bad tail name {st.tail!r}")
        if st.parts and st.mpu is None:
            raise StorageError("unreadable S3 upload state: parts without a multipart upload")
        if (st.tail is None) != (st.tail_size == 0):
            raise StorageError("unreadable S3 upload state: tail size does not match")
        return st

    def dump(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.mpu is not None:
            out["mpu"] = self.mpu
            out["parts"] = [list(p) for p in self.parts]
        if self.tail is not None:
            out["tail"] = self.tail
            out["tail_size"] = self.tail_size
            out["tail_etag"] = self.tail_etag
        return out

    def copy(self) -> _UploadState:
        return dataclasses.replace(self, parts=list(self.parts))


class S3UploadWriter:
    """Appends to one upload session. Memory: the pending bytes of at most one part."""

    def __init__(
        self,
        storage: S3Storage,
        upload_id: str,
        original: dict[str, Any],
        st: _UploadState,
        buffered: bytes,
        unchanged: bool,
        cleanup: asyncio.Task[None] | None,
    ):
        self._s = storage
        self._id = upload_id
        self._original = original
        self._st = st
        self._pieces: list[bytes | memoryview] = [buffered] if buffered else []
        self._pending = len(buffered)
        self._unchanged = unchanged  # nothing written yet and the state needs no rewrite
        self._created_mpu: str | None = None
        self._written_tail: str | None = None
        self._cleanup = cleanup
        self._inflight: set[concurrent.futures.Future[Any]] = set()
        self._closed = False
        self._finished = False

    def _check_open(self) -> None:
        if self._closed:
            raise StorageError("upload writer is closed")

    async def _run(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        fut = self._s._submit(fn, *args, **kwargs)
        self._inflight.add(fut)
        try:
            return await self._s._wait(fut, *self._s._bound(fn, args))
        finally:
            if fut.done():
                self._inflight.discard(fut)

    async def write(self, data: bytes) -> None:
        self._check_open()
        if not data:
            return
        if not isinstance(data, bytes):
            data = bytes(data)  # never keep a reference to a buffer the caller may reuse
        self._pieces.append(data)
        self._pending += len(data)
        self._unchanged = False
        while self._pending >= self._s.part_size:
            await self._upload_part(self._take(self._s.part_size))

    def _take(self, n: int) -> bytes:
        """The next n pending bytes, as one bytes object (the only copy the writer makes)."""
        out: list[bytes | memoryview] = []
        need = n
        while need:
            piece = self._pieces[0]
            if len(piece) <= need:
                out.append(piece)
                self._pieces.pop(0)
                need -= len(piece)
            else:
                view = memoryview(piece)
                out.append(view[:need])
                self._pieces[0] = view[need:]  # no copy: the caller's buffer stays referenced instead
                need = 0
        self._pending -= n
        return out[0] if len(out) == 1 and isinstance(out[0], bytes) else b"".join(out)

    async def _upload_part(self, body: bytes) -> None:
        st = self._st
        number = st.parts[-1][0] + 1 if st.parts else 1
        if number > MAX_PARTS:
            raise StorageError(f"upload {self._id} needs more than {MAX_PARTS} S3 parts; raise storage.s3.part_size")
        if st.mpu is None:
            st.mpu = self._created_mpu = await self._s._create_mpu(self._s._data_key(self._id), self._run)
        etag = await self._run(self._s._put_part, self._s._data_key(self._id), st.mpu, number, body)
        st.parts.append((number, etag, len(body)))

    async def finish(self) -> dict[str, Any]:
        self._check_open()
        if self._unchanged:
            state = self._original
        else:
            # On failure the registry calls abort(), which removes what this writer added.
            if self._pending >= MIN_PART:
                await self._upload_part(self._take(self._pending))
            st = self._st
            if self._pending:
                body = self._take(self._pending)
                name = f"tail-{st.parts_size + len(body):016d}-{secrets.token_hex(8)}"
                self._written_tail = name
                etag = await self._run(self._s._put_small, self._s._upload_key(self._id, name), body)
                st.tail, st.tail_size, st.tail_etag = name, len(body), etag
            else:
                st.tail, st.tail_size, st.tail_etag = None, 0, ""
            state = st.dump()
        self._closed = self._finished = True
        self._pieces = []
        await self._await_cleanup()
        return state

    async def abort(self) -> None:
        """Drop what this writer added; everything the previous state references stays."""
        if self._finished:
            return
        self._closed = True
        self._pieces, self._pending = [], 0
        if self._inflight:  # a cancelled request's S3 call still runs in its thread: let it end first
            await asyncio.to_thread(concurrent.futures.wait, list(self._inflight))
            self._inflight.clear()
        with contextlib.suppress(Exception):
            if self._written_tail is not None:
                await self._s._call("delete_object", Key=self._s._upload_key(self._id, self._written_tail))
            if self._created_mpu is not None:
                await self._s._abort_mpu(self._s._data_key(self._id), self._created_mpu)
        await self._await_cleanup()

    async def _await_cleanup(self) -> None:
        if self._cleanup is not None:
            task, self._cleanup = self._cleanup, None
            with contextlib.suppress(Exception):
                await asyncio.shield(task)  # best effort; a cancelled caller leaves it running


class S3Storage:
    name = "s3"

    def __init__(
        self,
        bucket: str,
        *,
        region: str = "us-east-1",
        endpoint_url: str = "",
        access_key: str = "",
        secret_key: str = "",
        path_style: bool = True,
        root_prefix: str = "",
        part_size: int = 16 * MiB,
        concurrency: int = 16,
        redirect: bool = True,
        redirect_expiry: float = 20 * 60,
        max_attempts: int = 3,
        connect_timeout: float = 5.0,
        read_timeout: float = 30.0,
        call_timeout: float = 60.0,
        copy_threshold: int = MAX_PART,
    ):
        if not bucket:
            raise ValueError("the S3 driver needs a bucket")
        if not MIN_PART <= part_size <= MAX_PART:
            raise ValueError(f"part_size must be between 5MiB and 5GiB, not {part_size}")
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        if bool(access_key) != bool(secret_key):
            raise ValueError("set both access_key and secret_key, or neither (standard AWS credential chain)")
        if min(connect_timeout, read_timeout, call_timeout) <= 0:
            raise ValueError("connect_timeout, read_timeout and call_timeout must be positive")
        self.bucket = bucket
        self.region = region or "us-east-1"
        self.endpoint_url = endpoint_url or None
        self._access_key = access_key or None
        self._secret_key = secret_key or None
        self.path_style = path_style
        prefix = root_prefix.strip("/")
        self.root_prefix = f"{prefix}/" if prefix else ""
        self.part_size = int(part_size)
        self.concurrency = int(concurrency)
        self.redirect = redirect
        self.redirect_expiry = max(1, int(redirect_expiry))
        self.max_attempts = max(1, int(max_attempts))
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self.call_timeout = float(call_timeout)
        self.copy_threshold = int(copy_threshold)
        self._client: Any = None
        self._executor: concurrent.futures.ThreadPoolExecutor | None = None
        self._key_locks: dict[str, list[Any]] = {}

    @contextlib.asynccontextmanager
    async def _key_lock(self, key: str) -> AsyncIterator[None]:
        entry = self._key_locks.setdefault(key, [asyncio.Lock(), 0])
        entry[1] += 1
        try:
            async with entry[0]:
                yield
        finally:
            entry[1] -= 1
            if entry[1] == 0:
                del self._key_locks[key]

    @classmethod
    def from_config(cls, cfg: Any) -> S3Storage:
        """Build from registry.config.S3Config (or a mapping with the same keys)."""
        values = dataclasses.asdict(cfg) if dataclasses.is_dataclass(cfg) else dict(cfg)
        bucket = values.pop("bucket", "")
        return cls(bucket, **values)

    @property
    def where(self) -> str:
        return f"s3://{self.bucket}/{self.root_prefix}" + (f" at {self.endpoint_url}" if self.endpoint_url else "")

    # plumbing ------------------------------------------------------------------------------

    def _make_client(self) -> Any:
        global _SESSION
        options: dict[str, Any] = dict(
            region_name=self.region,
            signature_version="s3v4",
            # total_max_attempts counts the first attempt (retries' max_attempts does not):
            # max_attempts 1 means no retry, as storage.s3.max_attempts says.
            retries={"mode": "standard", "total_max_attempts": self.max_attempts},
            connect_timeout=self.connect_timeout,
            read_timeout=self.read_timeout,
            # calls in flight are bounded by the thread pool; blob streams hold a connection
            # between chunks without holding a thread
            max_pool_connections=max(64, 4 * self.concurrency),
            s3={"addressing_style": "path" if self.path_style else "virtual"},
            user_agent_extra="okura",
        )
        # Content-MD5 is sent explicitly instead: S3-compatible servers (Ceph RGW, older
        # MinIO) reject the newer flexible-checksum trailers.
        if "request_checksum_calculation" in BotoConfig.OPTION_DEFAULTS:
            options["request_checksum_calculation"] = "when_required"
            options["response_checksum_validation"] = "when_required"
        with _SESSION_LOCK:  # clients of one session share its loaded service models
            if _SESSION is None:
                _SESSION = boto3.session.Session()
            return _SESSION.client(
                "s3",
                region_name=self.region,
                endpoint_url=self.endpoint_url,
                aws_access_key_id=self._access_key,
                aws_secret_access_key=self._secret_key,
                config=BotoConfig(**options),
            )

    async def open(self) -> None:
        if self._executor is None:
            self._executor = concurrent.futures.ThreadPoolExecutor(self.concurrency, thread_name_prefix="okura-s3")
        if self._client is None:
            self._client = await asyncio.to_thread(self._make_client)

    async def close(self) -> None:
        executor, self._executor = self._executor, None
        if executor is not None:
            await asyncio.to_thread(executor.shutdown, True, cancel_futures=True)
        client, self._client = self._client, None
        if client is not None:
            with contextlib.suppress(Exception):
                client.close()

    def _submit(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> concurrent.futures.Future[Any]:
        if self._executor is None or self._client is None:
            raise StorageError("S3 storage is not open")

        def call() -> Any:
            try:
                return fn(*args, **kwargs)
            except (ClientError, BotoCoreError, urllib3.exceptions.HTTPError) as e:
                raise self._translate(getattr(fn, "__name__", "call").strip("_"), e) from e

        return self._executor.submit(call)

    def _bound(self, fn: Callable[..., Any], args: tuple[Any, ...] = ()) -> tuple[str, float | None]:
        """The operation a pool function performs, and its deadline (None: none)."""
        operation = getattr(fn, "__name__", "call").strip("_")
        if operation in _SERVER_SIDE:
            return operation, None
        sent = sum(len(a) for a in args if isinstance(a, bytes | bytearray | memoryview))
        return operation, self.call_timeout + sent / _MIN_SEND_RATE

    async def _wait(self, fut: concurrent.futures.Future[Any], operation: str, timeout: float | None) -> Any:
        """The result of a pool call, given up after `timeout` seconds: then a queued call never
        runs, a running one is left to its thread (read_timeout ends it)."""
        waiter = asyncio.wrap_future(fut)
        if timeout is None:
            return await waiter
        deadline = asyncio.timeout(timeout)
        try:
            async with deadline:
                return await waiter
        except TimeoutError:
            if not deadline.expired():  # raised by the call itself
                raise
        raise _Timeout(f"S3 {operation} gave no answer within {timeout:.3g}s ({self.where})")

    async def _run(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        return await self._wait(self._submit(fn, *args, **kwargs), *self._bound(fn, args))

    async def _call(self, operation: str, *, timeout: float | None = None, **kwargs: Any) -> Any:
        """One boto3 client call on this bucket, off the event loop; `timeout` shortens its
        deadline (the stream's patience)."""
        if self._client is None:
            raise StorageError("S3 storage is not open")
        method = getattr(self._client, operation)

        def call() -> Any:
            return method(Bucket=self.bucket, **kwargs)

        call.__name__ = operation
        name, bound = self._bound(call)
        if timeout is not None:
            bound = timeout if bound is None else min(bound, timeout)
        return await self._wait(self._submit(call), name, bound)

    def _translate(self, operation: str, e: BaseException) -> StorageError:
        if isinstance(e, ClientError):
            err = e.response.get("Error") or {}
            code = str(err.get("Code") or "")
            message = str(err.get("Message") or "").strip()
            status = int((e.response.get("ResponseMetadata") or {}).get("HTTPStatusCode") or 0)
            detail = f"{code}: {message}" if message and message != code else code or str(status)
            exc = self._translate_client_error(operation, code, status, detail)
            exc.code = code  # type: ignore[attr-defined]
            return exc
        if isinstance(e, BotoConnectionError | HTTPClientError | IncompleteReadError | urllib3.exceptions.HTTPError):
            return StorageUnavailable(f"S3 endpoint unreachable ({self.where}): {operation}: {e}")
        if isinstance(e, NoCredentialsError | PartialCredentialsError):
            return StorageError(f"no S3 credentials for {self.where}: {e}")
        return StorageError(f"S3 {operation} on {self.where} failed: {e}")

    def _translate_client_error(self, operation: str, code: str, status: int, detail: str) -> StorageError:
        if code in _NOT_FOUND:
            return _Missing(f"S3 {operation}: {detail}")
        if code == "InvalidRange":
            return _InvalidRange(f"S3 {operation}: {detail}")
        if status >= 500 or status == 429 or code in _UNAVAILABLE:
            return StorageUnavailable(f"S3 is unavailable ({self.where}): {operation} failed after retries: {detail}")
        if code == "NoSuchBucket":
            return StorageError(f"S3 bucket {self.bucket!r} does not exist ({self.where})")
        if code in ("AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "403"):
            return StorageError(f"S3 denied {operation} on {self.where}: {detail}")
        return StorageError(f"S3 {operation} on {self.where} failed: {detail}")

    # keys ----------------------------------------------------------------------------------

    def _blob_key(self, digest: str) -> str:
        check_digest(digest)
        algorithm, encoded = digest.split(":", 1)
        return f"{self.root_prefix}blobs/{algorithm}/{encoded[:2]}/{encoded}"

    def _upload_prefix(self, upload_id: str) -> str:
        check_upload_id(upload_id)
        return f"{self.root_prefix}uploads/{upload_id}/"

    def _upload_key(self, upload_id: str, name: str) -> str:
        return self._upload_prefix(upload_id) + name

    def _data_key(self, upload_id: str) -> str:
        return self._upload_key(upload_id, "data")

    # synchronous helpers, run in the pool --------------------------------------------------

    def _put_part(self, key: str, mpu: str, number: int, body: bytes) -> str:
        md5 = base64.b64encode(_md5(body)).decode()
        resp = self._client.upload_part(
            Bucket=self.bucket, Key=key, UploadId=mpu, PartNumber=number, Body=body, ContentMD5=md5
        )
        return resp["ETag"]

    def _put_small(self, key: str, body: bytes) -> str:
        """PutObject of an in-memory body; returns the object's ETag (without quotes)."""
        digest = _md5(body)
        resp = self._client.put_object(
            Bucket=self.bucket,
            Key=key,
            Body=body,
            ContentMD5=base64.b64encode(digest).decode(),
            ContentType="application/octet-stream",
        )
        return _etag_hex(resp.get("ETag") or digest.hex())

    def _get_all(self, key: str) -> bytes:
        """A small object (a tail) read whole."""
        resp = self._client.get_object(Bucket=self.bucket, Key=key)
        with contextlib.closing(resp["Body"]) as body:
            return body.read()

    # shared operations ---------------------------------------------------------------------

    async def _head(self, key: str) -> dict[str, Any] | None:
        try:
            return await self._call("head_object", Key=key)
        except _Missing:
            return None

    async def _create_mpu(self, key: str, run: Callable[..., Any] | None = None) -> str:
        def create() -> str:
            resp = self._client.create_multipart_upload(
                Bucket=self.bucket, Key=key, ContentType="application/octet-stream"
            )
            return resp["UploadId"]

        create.__name__ = "create_multipart_upload"
        return await (run or self._run)(create)

    async def _abort_mpu(self, key: str, mpu: str) -> None:
        with contextlib.suppress(_Missing):
            await self._call("abort_multipart_upload", Key=key, UploadId=mpu)

    async def _pages(self, operation: str, result_key: str, **kwargs: Any) -> AsyncIterator[list[dict[str, Any]]]:
        """Pages of ListObjectsV2 / ListMultipartUploads, each fetched off the event loop."""
        markers: dict[str, Any] = {}
        while True:
            resp = await self._call(operation, **kwargs, **markers)
            yield resp.get(result_key) or []
            if not resp.get("IsTruncated"):
                return
            if operation == "list_objects_v2":
                markers = {"ContinuationToken": resp["NextContinuationToken"]}
            else:
                markers = {"KeyMarker": resp.get("NextKeyMarker"), "UploadIdMarker": resp.get("NextUploadIdMarker")}

    async def _objects(self, prefix: str) -> AsyncIterator[dict[str, Any]]:
        async for page in self._pages("list_objects_v2", "Contents", Prefix=prefix):
            for item in page:
                yield item

    async def _multipart_uploads(self, prefix: str) -> AsyncIterator[dict[str, Any]]:
        async for page in self._pages("list_multipart_uploads", "Uploads", Prefix=prefix):
            for item in page:
                yield item

    async def _delete_keys(self, keys: Iterable[str]) -> None:
        batch: list[str] = []
        for key in [*keys, None]:
            if key is not None:
                batch.append(key)
            if batch and (key is None or len(batch) == 1000):
                resp = await self._call(
                    "delete_objects", Delete={"Objects": [{"Key": k} for k in batch], "Quiet": True}
                )
                errors = [e for e in resp.get("Errors") or [] if e.get("Code") != "NoSuchKey"]
                if errors:
                    first = errors[0]
                    raise StorageError(f"S3 could not delete {first.get('Key')}: {first.get('Code')}")
                batch = []

    async def _purge_upload(self, upload_id: str, st: _UploadState) -> None:
        """Abort every multipart upload of the session and delete all its objects."""
        prefix = self._upload_prefix(upload_id)
        mpus = {(self._data_key(upload_id), st.mpu)} if st.mpu else set()
        async for item in self._multipart_uploads(prefix):
            mpus.add((item["Key"], item["UploadId"]))
        await asyncio.gather(*(self._abort_mpu(key, mpu) for key, mpu in mpus))
        await self._delete_keys([item["Key"] async for item in self._objects(prefix)])

    async def _stream(self, key: str, offset: int, length: int | None) -> AsyncIterator[bytes]:
        """Bytes [offset, offset+length) of an object, in chunks of at most S3_READ_CHUNK, over one
        ranged GET (re-issued from the current position if the stream breaks). The stream fails
        once it has waited call_timeout on S3 without a byte arriving, resumptions included
        (time spent waiting for the client does not count)."""
        if length == 0:
            if await self._head(key) is None:
                raise _Missing(key)
            return
        end = None if length is None else offset + length - 1
        pos = offset
        failures = 0
        patience = self.call_timeout  # waiting on S3 left until a byte must arrive
        while True:
            byte_range = {} if pos == 0 and end is None else {"Range": f"bytes={pos}-{'' if end is None else end}"}
            started = time.monotonic()
            try:
                resp = await self._call("get_object", timeout=patience, Key=key, **byte_range)
            except _InvalidRange:  # starts at or past the end
                if await self._head(key) is None:
                    raise _Missing(key) from None
                return
            patience -= time.monotonic() - started
            body = resp["Body"]
            fut: concurrent.futures.Future[Any] | None = None
            try:
                # One read ahead: the next chunk comes off the S3 socket while this one
                # goes out to the client. The first is small, for a quick first byte.
                want = FIRST_READ if end is None else min(FIRST_READ, end - pos + 1)
                fut = self._submit(body.read, want) if want > 0 else None
                while fut is not None:
                    started = time.monotonic()
                    chunk = await self._wait(fut, "get_object body read", max(patience, 0.001))
                    fut = None
                    if not chunk:
                        return
                    patience = self.call_timeout
                    pos += len(chunk)
                    want = S3_READ_CHUNK if end is None else min(S3_READ_CHUNK, end - pos + 1)
                    if want > 0:
                        fut = self._submit(body.read, want)
                    yield chunk
                return
            except StorageUnavailable:
                patience -= time.monotonic() - started
                failures += 1
                if failures > _STREAM_RETRIES or patience <= 0:
                    raise
                log.warning("S3 read of %s broke at byte %d; resuming", key, pos)
            finally:
                if fut is not None and not fut.done():  # never close under a running read
                    fut.add_done_callback(lambda _f, b=body: b.close())
                else:
                    body.close()

    # health --------------------------------------------------------------------------------

    async def check(self) -> None:
        try:
            await self._call("head_bucket")
        except _Missing:
            raise StorageMissing(f"S3 bucket {self.bucket!r} does not exist ({self.where})") from None
        except StorageUnavailable:
            raise
        except StorageError as e:
            raise StorageError(f"S3 bucket {self.bucket!r} is not usable: {e}") from None

    # uploads -------------------------------------------------------------------------------

    async def start_upload(self, upload_id: str) -> dict[str, Any]:
        check_upload_id(upload_id)
        return {}  # objects appear with the first writer that finishes

    async def upload_writer(self, upload_id: str, state: dict[str, Any], offset: int) -> S3UploadWriter:
        check_upload_id(upload_id)
        st = _UploadState.load(state)
        if offset > st.size:
            if st.empty:
                raise BlobNotFound(upload_id)
            raise StorageError(f"upload {upload_id} holds {st.size} bytes, expected {offset}")
        if offset < st.parts_size:
            raise StorageError(f"upload {upload_id} cannot go back to byte {offset}: it is in uploaded parts")

        async def read_tail() -> bytes:
            if st.tail is None:
                return b""
            try:
                return await self._run(self._get_all, self._upload_key(upload_id, st.tail))
            except _Missing:
                raise BlobNotFound(upload_id) from None

        async def check_mpu() -> bool:
            """Whether the multipart upload is still open (False: it was completed)."""
            if st.mpu is None:
                return True
            try:
                await self._call("list_parts", Key=self._data_key(upload_id), UploadId=st.mpu, MaxParts=1)
                return True
            except _Missing:
                return False

        tail, mpu_open = await asyncio.gather(read_tail(), check_mpu())
        if len(tail) != st.tail_size:
            raise StorageError(f"upload {upload_id}: tail holds {len(tail)} bytes, state says {st.tail_size}")
        tail = tail[: offset - st.parts_size]
        st = st.copy()
        if not mpu_open:
            await self._reopen(upload_id, st)
        unchanged = mpu_open and offset == st.size
        cleanup = None
        if offset > 0:
            cleanup = asyncio.ensure_future(self._drop_stale_tails(upload_id, offset, st.tail))
        return S3UploadWriter(self, upload_id, state, st, tail, unchanged, cleanup)

    async def _reopen(self, upload_id: str, st: _UploadState) -> None:
        """The session's multipart upload was completed (read_upload, or a commit that failed
        later): continue in a new one, its first parts copied server side from the result,
        after checking (by ETag) that the result is exactly this state's parts and tail."""
        data_key = self._data_key(upload_id)
        if not await self._completed_from(data_key, st):
            raise BlobNotFound(upload_id)
        mpu = await self._create_mpu(data_key)
        try:
            ranges = _ranges(st.parts_size, MAX_PART)
            etags = await asyncio.gather(
                *(
                    self._call(
                        "upload_part_copy",
                        Key=data_key,
                        UploadId=mpu,
                        PartNumber=i,
                        CopySource={"Bucket": self.bucket, "Key": data_key},
                        CopySourceRange=f"bytes={start}-{end}",
                    )
                    for i, (start, end) in enumerate(ranges, 1)
                )
            )
        except BaseException:
            with contextlib.suppress(Exception):
                await self._abort_mpu(data_key, mpu)
            raise
        st.mpu = mpu
        st.parts = [
            (i, resp["CopyPartResult"]["ETag"], end - start + 1)
            for i, ((start, end), resp) in enumerate(zip(ranges, etags, strict=True), 1)
        ]

    async def _completed_from(self, data_key: str, st: _UploadState) -> bool:
        """Whether uploads/<id>/data is this state's multipart upload, completed (parts + tail)."""
        info = await self._head(data_key)
        if info is None or int(info["ContentLength"]) != st.size:
            return False
        etags = [p[1] for p in st.parts] + ([st.tail_etag] if st.tail else [])
        expected = _multipart_etag(etags)
        if expected is None:  # ETags that are no MD5s (SSE-KMS, SSE-C, some servers' part copies)
            log.info("upload data %s: ETags not comparable, trusting its size", data_key)
            return True
        return _etag_hex(info.get("ETag", "")) == expected

    async def _drop_stale_tails(self, upload_id: str, offset: int, keep: str | None) -> None:
        """Tails that end at or before `offset` belong to superseded states, or to writers whose
        state was never recorded: the registry's recorded size only grows. Best effort."""
        try:
            prefix = self._upload_key(upload_id, "tail-")
            stale = []
            async for item in self._objects(prefix):
                name = item["Key"][len(self._upload_prefix(upload_id)) :]
                m = _TAIL_RE.fullmatch(name)
                if m and name != keep and int(m.group(1)) <= offset:
                    stale.append(item["Key"])
            await self._delete_keys(stale)
        except Exception as e:
            log.warning("could not remove stale upload tails of %s: %s", upload_id, e)

    async def read_upload(self, upload_id: str, state: dict[str, Any]) -> AsyncIterator[bytes]:
        check_upload_id(upload_id)
        st = _UploadState.load(state)
        try:
            if st.parts:
                # Parts of an open multipart upload cannot be read: complete it. Writers and
                # commit recognise the completed object and carry on from it.
                key = await self._complete(upload_id, st)
                async for chunk in self._stream(key, 0, st.size):
                    yield chunk
            elif st.tail is not None:
                async for chunk in self._stream(self._upload_key(upload_id, st.tail), 0, st.tail_size):
                    yield chunk
        except _Missing:
            raise BlobNotFound(upload_id) from None

    async def _complete(self, upload_id: str, st: _UploadState) -> str:
        """Complete the session's multipart upload with the tail as its last part; returns the
        key of the object holding exactly the session's bytes."""
        data_key = self._data_key(upload_id)
        parts = [{"PartNumber": n, "ETag": etag} for n, etag, _ in st.parts]
        try:
            if st.tail is not None:
                resp = await self._call(
                    "upload_part_copy",
                    Key=data_key,
                    UploadId=st.mpu,
                    PartNumber=st.parts[-1][0] + 1,
                    CopySource={"Bucket": self.bucket, "Key": self._upload_key(upload_id, st.tail)},
                )
                parts.append({"PartNumber": st.parts[-1][0] + 1, "ETag": resp["CopyPartResult"]["ETag"]})
            await self._call(
                "complete_multipart_upload", Key=data_key, UploadId=st.mpu, MultipartUpload={"Parts": parts}
            )
        except _Missing:
            # Completed before (read_upload, or a commit that stopped before its copy)?
            if await self._completed_from(data_key, st):
                return data_key
            raise BlobNotFound(upload_id) from None
        except StorageError as e:
            if getattr(e, "code", "") in ("InvalidPart", "InvalidPartOrder"):
                raise StorageError(
                    f"upload {upload_id}: a part was replaced by a concurrent writer; the upload must restart"
                ) from e
            raise
        return data_key

    async def _copy(self, src: str, dst: str, size: int) -> None:
        source = {"Bucket": self.bucket, "Key": src}
        if size <= self.copy_threshold:
            await self._call(
                "copy_object",
                Key=dst,
                CopySource=source,
                MetadataDirective="REPLACE",
                ContentType="application/octet-stream",
            )
            return
        # Above 5 GiB CopyObject refuses: copy in parts, still server side.
        mpu = await self._create_mpu(dst)
        try:
            ranges = _ranges(size, min(MAX_PART, max(512 * MiB, self.part_size, -(-size // MAX_PARTS))))
            limit = asyncio.Semaphore(max(1, min(8, self.concurrency // 2)))

            async def part(number: int, start: int, end: int) -> dict[str, Any]:
                async with limit:
                    resp = await self._call(
                        "upload_part_copy",
                        Key=dst,
                        UploadId=mpu,
                        PartNumber=number,
                        CopySource=source,
                        CopySourceRange=f"bytes={start}-{end}",
                    )
                return {"PartNumber": number, "ETag": resp["CopyPartResult"]["ETag"]}

            parts = await asyncio.gather(*(part(i, s, e) for i, (s, e) in enumerate(ranges, 1)))
            await self._call("complete_multipart_upload", Key=dst, UploadId=mpu, MultipartUpload={"Parts": parts})
        except BaseException:
            with contextlib.suppress(Exception):
                await self._abort_mpu(dst, mpu)
            raise

    async def commit_upload(self, upload_id: str, state: dict[str, Any], digest: str, size: int) -> None:
        dst = self._blob_key(digest)
        check_upload_id(upload_id)
        st = _UploadState.load(state)
        if st.empty and size > 0:
            raise BlobNotFound(upload_id)
        if st.size != size:
            raise StorageError(f"upload {upload_id} holds {st.size} bytes, commit expected {size}")
        # Commits of one digest in this process take turns: the first copies, the others find
        # the blob in place (concurrent copies to one key are slow on some servers).
        async with self._key_lock(dst):
            if await self._head(dst) is None:
                if st.parts:
                    await self._copy(await self._complete(upload_id, st), dst, size)
                elif st.tail is not None:
                    try:
                        await self._copy(self._upload_key(upload_id, st.tail), dst, size)
                    except _Missing:
                        raise BlobNotFound(upload_id) from None
                else:
                    await self._run(self._put_small, dst, b"")
        # The blob is in place: the upload's objects are leftovers now, which the registry's
        # purge also finds (list_uploads) should this cleanup fail.
        try:
            await self._purge_upload(upload_id, st)
        except StorageError as e:
            log.warning("committed upload %s but could not remove its data: %s", upload_id, e)

    async def cancel_upload(self, upload_id: str, state: dict[str, Any]) -> None:
        check_upload_id(upload_id)
        try:
            st = _UploadState.load(state)
        except StorageError:
            st = _UploadState()
        await self._purge_upload(upload_id, st)

    async def list_uploads(self) -> AsyncIterator[tuple[str, float]]:
        prefix = f"{self.root_prefix}uploads/"
        found: dict[str, float] = {}

        def note(key: str, when: Any) -> None:
            upload_id = key[len(prefix) :].split("/", 1)[0]
            if UPLOAD_ID_RE.fullmatch(upload_id) and when is not None:
                found[upload_id] = max(found.get(upload_id, 0.0), when.timestamp())

        async for item in self._objects(prefix):
            note(item["Key"], item.get("LastModified"))
        async for item in self._multipart_uploads(prefix):
            note(item["Key"], item.get("Initiated"))
        for upload_id, modified in found.items():
            yield upload_id, modified

    # blobs ---------------------------------------------------------------------------------

    async def stat(self, digest: str) -> BlobInfo | None:
        info = await self._head(self._blob_key(digest))
        if info is None:
            return None
        return BlobInfo(digest, int(info["ContentLength"]), info["LastModified"].timestamp())

    async def read(self, digest: str, offset: int = 0, length: int | None = None) -> AsyncIterator[bytes]:
        key = self._blob_key(digest)
        try:
            async for chunk in self._stream(key, offset, length):
                yield chunk
        except _Missing:
            raise BlobNotFound(digest) from None

    async def delete(self, digest: str) -> bool:
        key = self._blob_key(digest)
        if await self._head(key) is None:
            return False
        await self._call("delete_object", Key=key)
        return True

    async def list_blobs(self) -> AsyncIterator[BlobInfo]:
        prefix = f"{self.root_prefix}blobs/"
        async for page in self._pages("list_objects_v2", "Contents", Prefix=prefix):
            for item in page:
                parts = item["Key"][len(prefix) :].split("/")
                if len(parts) != 3:
                    continue
                algorithm, shard, encoded = parts
                digest = f"{algorithm}:{encoded}"
                if shard != encoded[:2] or not DIGEST_PATH_RE.fullmatch(digest):
                    continue  # not a blob this driver wrote
                yield BlobInfo(digest, int(item["Size"]), item["LastModified"].timestamp())

    async def redirect_url(self, digest: str, method: str) -> str | None:
        key = self._blob_key(digest)
        if not self.redirect:
            return None
        operation = "head_object" if method.upper() == "HEAD" else "get_object"

        def presign() -> str:
            return self._client.generate_presigned_url(
                operation, Params={"Bucket": self.bucket, "Key": key}, ExpiresIn=self.redirect_expiry
            )

        presign.__name__ = "generate_presigned_url"
        return await self._run(presign)
