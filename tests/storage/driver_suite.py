"""The behaviour every blob storage driver must show.

A driver's test module subclasses `DriverSuite` and provides one async fixture,
`driver`, yielding an opened driver instance with empty storage:

    class TestMyDriver(DriverSuite):
        @pytest_asyncio.fixture
        async def driver(self, tmp_path):
            d = MyDriver(...)
            await d.open()
            yield d
            await d.close()

The suite only uses the `storage.base.BlobStorage` protocol, never driver internals.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import random
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest

from storage.base import READ_CHUNK, BlobNotFound, StorageError

MiB = 1 << 20


def digest_of(data: bytes, algorithm: str = "sha256") -> str:
    return f"{algorithm}:{hashlib.new(algorithm, data).hexdigest()}"


def new_upload_id() -> str:
    return str(uuid.uuid4())


async def collect(stream: AsyncIterator[bytes]) -> bytes:
    return b"".join([chunk async for chunk in stream])


async def consume(make_stream: Any) -> bytes:
    """Call a stream factory and drain it: errors may come from the call or the first step."""
    return await collect(make_stream())


async def blob_digests(driver: Any) -> list[str]:
    return [info.digest async for info in driver.list_blobs()]


async def upload_ids(driver: Any) -> list[str]:
    return [upload_id async for upload_id, _modified in driver.list_uploads()]


async def write_session(driver: Any, upload_id: str, state: dict[str, Any], offset: int, parts: list[bytes]) -> dict:
    """One writer session (one PATCH): append `parts` at `offset`, return the new driver state."""
    writer = await driver.upload_writer(upload_id, state, offset)
    try:
        for part in parts:
            await writer.write(part)
    except BaseException:
        await writer.abort()
        raise
    return await writer.finish()


async def upload(driver: Any, data: bytes, pieces: int = 1) -> tuple[str, dict[str, Any]]:
    """A complete upload of `data` over `pieces` writer sessions; returns (upload id, state)."""
    upload_id = new_upload_id()
    state = await driver.start_upload(upload_id)
    step = max(1, -(-len(data) // pieces))
    offset = 0
    while offset < len(data):
        part = data[offset : offset + step]
        state = await write_session(driver, upload_id, state, offset, [part])
        offset += len(part)
    return upload_id, state


async def store(driver: Any, data: bytes, pieces: int = 1) -> str:
    """Upload and commit `data`; returns its digest."""
    upload_id, state = await upload(driver, data, pieces)
    digest = digest_of(data)
    await driver.commit_upload(upload_id, state, digest, len(data))
    return digest


INVALID_DIGESTS = [
    "sha256:../../etc",
    "sha256:../../../../etc/passwd",
    "../x",
    "/etc/passwd",
    "sha256:" + "A" * 64,  # upper case hex
    "sha256:" + "0" * 63,
    "sha256:" + "0" * 65,
    "sha256:" + "0" * 62 + "/x",
    "sha256:" + "0" * 64 + "\n",  # `$` also matches before a final newline
    "sha512:" + "0" * 64,
    "md5:" + "0" * 32,
    "sha256",
    "",
]

INVALID_UPLOAD_IDS = [
    "../x",
    "../../../../tmp/okura-escape",
    "a/../../b0000000",
    "/etc/passwd",
    "abc",  # too short
    "x" * 65,
    "0000000.tmp",
    "0123456789abcdef\n",  # `$` also matches before a final newline
    "",
]

VALID_FAKE_DIGEST = "sha256:" + "0" * 64


class DriverSuite:
    """Base class of every driver's test class; see the module docstring."""

    # -- uploads ---------------------------------------------------------------------------

    async def test_upload_across_sessions_then_read_upload(self, driver):
        upload_id = new_upload_id()
        state = await driver.start_upload(upload_id)
        assert isinstance(state, dict)
        assert await consume(lambda: driver.read_upload(upload_id, state)) == b""
        parts = [os.urandom(1000), os.urandom(READ_CHUNK + 123), b"x", os.urandom(70_000)]
        offset = 0
        for part in parts:
            # several writes inside one session as well
            state = await write_session(driver, upload_id, state, offset, [part[:10], part[10:]])
            offset += len(part)
            assert await consume(lambda s=state: driver.read_upload(upload_id, s)) == b"".join(parts)[:offset]
        assert upload_id in await upload_ids(driver)

    async def test_empty_writer_session_changes_nothing(self, driver):
        upload_id = new_upload_id()
        state = await driver.start_upload(upload_id)
        state = await write_session(driver, upload_id, state, 0, [b"abc"])
        state = await write_session(driver, upload_id, state, 3, [])
        state = await write_session(driver, upload_id, state, 3, [b"def"])
        assert await consume(lambda: driver.read_upload(upload_id, state)) == b"abcdef"

    @pytest.mark.parametrize(
        "sizes",
        [
            [4096, 4096, 4096],
            [4095, 1, 4097, 8191, 8193],
            [1, 4096, 3, 65536, 7, 4 * MiB + 1],
            [12_345, 4 * MiB, 100, 2 * MiB - 1, 4096 * 3 + 17],
        ],
        ids=["aligned", "around-page", "tiny-and-big", "mixed"],
    )
    async def test_write_sizes_and_offsets(self, driver, sizes):
        """Writes of every alignment (page-aligned runs may take another path than their
        unaligned heads and tails), one per session and several per session."""
        data = os.urandom(sum(sizes))
        upload_id = new_upload_id()
        state = await driver.start_upload(upload_id)
        offset = 0
        for i, size in enumerate(sizes):
            part = data[offset : offset + size]
            pieces = [part] if i % 2 else [part[: size // 3], part[size // 3 :]]
            state = await write_session(driver, upload_id, state, offset, pieces)
            offset += size
        assert await consume(lambda: driver.read_upload(upload_id, state)) == data
        digest = digest_of(data)
        await driver.commit_upload(upload_id, state, digest, len(data))
        assert await consume(lambda: driver.read(digest)) == data

    async def test_many_small_writes_in_one_session(self, driver):
        rng = random.Random(7)
        parts = [rng.randbytes(rng.randrange(1, 9000)) for _ in range(300)]
        upload_id = new_upload_id()
        state = await driver.start_upload(upload_id)
        state = await write_session(driver, upload_id, state, 0, parts)
        data = b"".join(parts)
        digest = digest_of(data)
        await driver.commit_upload(upload_id, state, digest, len(data))
        assert await consume(lambda: driver.read(digest)) == data

    async def test_abort_after_large_write_then_resume_unaligned(self, driver):
        upload_id = new_upload_id()
        state = await driver.start_upload(upload_id)
        head = os.urandom(5000)  # an unaligned recorded size
        state = await write_session(driver, upload_id, state, 0, [head])
        writer = await driver.upload_writer(upload_id, state, len(head))
        await writer.write(os.urandom(3 * MiB + 5))
        await writer.abort()
        tail = os.urandom(2 * MiB + 3)
        state = await write_session(driver, upload_id, state, len(head), [tail])
        assert await consume(lambda: driver.read_upload(upload_id, state)) == head + tail

    async def test_aborted_writer_bytes_are_dropped_on_next_open(self, driver):
        upload_id = new_upload_id()
        state = await driver.start_upload(upload_id)
        state = await write_session(driver, upload_id, state, 0, [b"A" * 5000])
        # A request that failed after writing: its bytes were never recorded.
        writer = await driver.upload_writer(upload_id, state, 5000)
        await writer.write(b"garbage-" * 1000)
        await writer.abort()
        # The next session resumes at the recorded offset; the garbage must not survive.
        state = await write_session(driver, upload_id, state, 5000, [b"B" * 3000])
        data = b"A" * 5000 + b"B" * 3000
        assert await consume(lambda: driver.read_upload(upload_id, state)) == data
        digest = digest_of(data)
        await driver.commit_upload(upload_id, state, digest, len(data))
        assert (await driver.stat(digest)).size == len(data)
        assert await consume(lambda: driver.read(digest)) == data

    async def test_writer_session_failing_midway_then_resumed(self, driver):
        upload_id = new_upload_id()
        state = await driver.start_upload(upload_id)
        state = await write_session(driver, upload_id, state, 0, [b"1" * 100])
        with pytest.raises(RuntimeError):
            writer = await driver.upload_writer(upload_id, state, 100)
            try:
                await writer.write(b"2" * 100_000)
                raise RuntimeError("client went away")
            except BaseException:
                await writer.abort()
                raise
        state = await write_session(driver, upload_id, state, 100, [b"3" * 10])
        assert await consume(lambda: driver.read_upload(upload_id, state)) == b"1" * 100 + b"3" * 10

    async def test_writer_beyond_stored_bytes_is_refused(self, driver):
        upload_id = new_upload_id()
        state = await driver.start_upload(upload_id)
        state = await write_session(driver, upload_id, state, 0, [b"abc"])
        with pytest.raises(StorageError):
            await driver.upload_writer(upload_id, state, 10)

    async def test_upload_writer_on_missing_upload(self, driver):
        # Resuming (offset > 0) an upload the driver has no data for. (At offset 0 a driver
        # may create upload data lazily, so a fresh writer there is allowed to succeed.)
        with pytest.raises(BlobNotFound):
            await driver.upload_writer(new_upload_id(), {}, 1)
        with pytest.raises(BlobNotFound):
            await driver.upload_writer(new_upload_id(), {}, 5 * READ_CHUNK)
        assert await upload_ids(driver) == []

    async def test_upload_started_without_data(self, driver):
        upload_id = new_upload_id()
        state = await driver.start_upload(upload_id)
        assert await consume(lambda: driver.read_upload(upload_id, state)) == b""
        await driver.cancel_upload(upload_id, state)
        assert upload_id not in await upload_ids(driver)

    async def test_cancel_upload_removes_it(self, driver):
        upload_id, state = await upload(driver, os.urandom(10_000), pieces=2)
        keep_id, _ = await upload(driver, b"keep me")
        assert {upload_id, keep_id} <= set(await upload_ids(driver))
        await driver.cancel_upload(upload_id, state)
        ids = await upload_ids(driver)
        assert upload_id not in ids
        assert keep_id in ids
        with pytest.raises(BlobNotFound):  # resuming a cancelled upload
            await driver.upload_writer(upload_id, state, 10_000)
        try:
            leftover = await consume(lambda: driver.read_upload(upload_id, state))
        except BlobNotFound:
            leftover = b""
        assert leftover == b"", "cancelled upload data is still readable"
        with pytest.raises(BlobNotFound):
            await driver.commit_upload(upload_id, state, digest_of(b"x" * 10_000), 10_000)
        await driver.cancel_upload(upload_id, state)  # cancelling twice is harmless
        assert upload_id not in await upload_ids(driver)

    async def test_list_uploads_reports_modification_times(self, driver):
        upload_id, _ = await upload(driver, b"hello")
        listed = {uid: modified async for uid, modified in driver.list_uploads()}
        assert upload_id in listed
        assert isinstance(listed[upload_id], float | int)
        assert listed[upload_id] > 1_000_000_000  # seconds since the epoch, not a relative age

    # -- committing and reading blobs ------------------------------------------------------

    async def test_commit_then_stat_read_delete(self, driver):
        data = os.urandom(2 * READ_CHUNK + 12345)
        upload_id, state = await upload(driver, data, pieces=3)
        digest = digest_of(data)
        await driver.commit_upload(upload_id, state, digest, len(data))

        info = await driver.stat(digest)
        assert info is not None
        assert info.digest == digest
        assert info.size == len(data)
        assert info.modified > 1_000_000_000
        assert await consume(lambda: driver.read(digest)) == data
        assert digest in await blob_digests(driver)
        assert upload_id not in await upload_ids(driver)

        assert await driver.delete(digest) is True
        assert await driver.delete(digest) is False
        assert await driver.stat(digest) is None
        assert digest not in await blob_digests(driver)
        with pytest.raises(BlobNotFound):
            await consume(lambda: driver.read(digest))

    @pytest.mark.parametrize(
        ("offset", "length"),
        [
            (0, None),
            (0, 1),
            (0, READ_CHUNK),
            (0, READ_CHUNK + 1),
            (READ_CHUNK - 5, 10),  # crosses the first chunk boundary
            (READ_CHUNK - 1, 2),
            (READ_CHUNK, 1),
            (100, 2 * READ_CHUNK),  # crosses two boundaries
            (7, None),
            (READ_CHUNK + 3, None),
            (2 * READ_CHUNK + 1000 - 1, 1),  # the last byte
            (2 * READ_CHUNK + 1000 - 1, None),
            (2 * READ_CHUNK + 1000, None),  # offset at the end
            (2 * READ_CHUNK + 1000, 0),
            (0, 0),  # zero length
            (READ_CHUNK + 5, 0),
        ],
    )
    async def test_read_ranges(self, driver, offset, length):
        data = hashlib.sha256(b"seed").digest() * ((2 * READ_CHUNK + 1000) // 32 + 1)
        data = data[: 2 * READ_CHUNK + 1000]
        assert len(data) == 2 * READ_CHUNK + 1000
        digest = await store(driver, data)
        got = await consume(lambda: driver.read(digest, offset, length))
        expected = data[offset:] if length is None else data[offset : offset + length]
        assert len(got) == len(expected)
        assert got == expected

    async def test_read_yields_bounded_chunks(self, driver):
        data = os.urandom(3 * READ_CHUNK + 7)
        digest = await store(driver, data)
        sizes = [len(chunk) async for chunk in driver.read(digest)]
        assert sum(sizes) == len(data)
        assert all(0 < s <= 4 * READ_CHUNK for s in sizes), sizes  # streamed, not one whole-blob buffer

    async def test_empty_blob(self, driver):
        digest = await store(driver, b"")
        assert (await driver.stat(digest)).size == 0
        assert await consume(lambda: driver.read(digest)) == b""

    async def test_sha512_blob(self, driver):
        data = os.urandom(5000)
        upload_id, state = await upload(driver, data)
        digest = digest_of(data, "sha512")
        await driver.commit_upload(upload_id, state, digest, len(data))
        assert (await driver.stat(digest)).size == len(data)
        assert await consume(lambda: driver.read(digest)) == data
        assert digest in await blob_digests(driver)

    async def test_list_blobs_lists_every_committed_blob(self, driver):
        blobs = [os.urandom(n) for n in (1, 100, 5000)]
        digests = [await store(driver, b) for b in blobs]
        listed = {info.digest: info.size async for info in driver.list_blobs()}
        assert listed == {d: len(b) for d, b in zip(digests, blobs, strict=True)}

    async def test_committing_same_digest_twice(self, driver):
        data = os.urandom(300_000)
        digest = await store(driver, data)
        first = await driver.stat(digest)
        second_id, second_state = await upload(driver, data, pieces=2)
        await driver.commit_upload(second_id, second_state, digest, len(data))  # must not fail
        assert (await driver.stat(digest)).size == first.size == len(data)
        assert await blob_digests(driver) == [digest]
        assert await consume(lambda: driver.read(digest)) == data
        assert second_id not in await upload_ids(driver)

    async def test_concurrent_commits_of_one_digest(self, driver):
        data = os.urandom(READ_CHUNK + 4321)
        digest = digest_of(data)
        sessions = [await upload(driver, data, pieces=1 + i % 3) for i in range(10)]
        await asyncio.gather(*(driver.commit_upload(uid, st, digest, len(data)) for uid, st in sessions))
        assert await blob_digests(driver) == [digest]
        assert (await driver.stat(digest)).size == len(data)
        assert await consume(lambda: driver.read(digest)) == data
        remaining = set(await upload_ids(driver))
        assert not remaining & {uid for uid, _ in sessions}

    async def test_concurrent_commits_while_reading(self, driver):
        data = os.urandom(3 * READ_CHUNK)
        digest = await store(driver, data)
        sessions = [await upload(driver, data) for _ in range(5)]

        async def read_back() -> bytes:
            return await consume(lambda: driver.read(digest))

        results = await asyncio.gather(
            *(driver.commit_upload(uid, st, digest, len(data)) for uid, st in sessions),
            *(read_back() for _ in range(5)),
        )
        assert all(r == data for r in results[5:])
        assert await consume(lambda: driver.read(digest)) == data

    async def test_concurrent_independent_uploads(self, driver):
        blobs = [os.urandom(50_000 + i) for i in range(10)]
        digests = await asyncio.gather(*(store(driver, b, pieces=3) for b in blobs))
        for digest, data in zip(digests, blobs, strict=True):
            assert await consume(lambda d=digest: driver.read(d)) == data
        assert sorted(await blob_digests(driver)) == sorted(digests)

    async def test_concurrent_large_unaligned_writers(self, driver):
        """Many writers at once, each with large writes at unaligned offsets: buffers a
        driver reuses between writers must never mix their bytes."""
        blobs = [os.urandom(3 * MiB + 1000 * i + 7) for i in range(8)]

        async def one(data: bytes) -> tuple[str, dict]:
            upload_id = new_upload_id()
            state = await driver.start_upload(upload_id)
            state = await write_session(driver, upload_id, state, 0, [data[:777]])
            state = await write_session(
                driver, upload_id, state, 777, [data[777 : 777 + MiB + 5], data[777 + MiB + 5 :]]
            )
            return upload_id, state

        sessions = await asyncio.gather(*(one(b) for b in blobs))
        for (upload_id, state), data in zip(sessions, blobs, strict=True):
            assert await consume(lambda u=upload_id, s=state: driver.read_upload(u, s)) == data
        await asyncio.gather(
            *(
                driver.commit_upload(uid, st, digest_of(data), len(data))
                for (uid, st), data in zip(sessions, blobs, strict=True)
            )
        )
        for data in blobs:
            assert await consume(lambda d=data: driver.read(digest_of(d))) == data

    async def test_partial_upload_is_never_a_blob(self, driver):
        data = os.urandom(100_000)
        digest = digest_of(data)
        upload_id = new_upload_id()
        state = await driver.start_upload(upload_id)
        state = await write_session(driver, upload_id, state, 0, [data[:40_000]])
        writer = await driver.upload_writer(upload_id, state, 40_000)
        await writer.write(data[40_000:])  # all bytes written, writer still open
        assert await driver.stat(digest) is None
        assert await driver.stat(digest_of(data[:40_000])) is None
        assert await blob_digests(driver) == []
        with pytest.raises(BlobNotFound):
            await consume(lambda: driver.read(digest))
        state = await writer.finish()
        assert await driver.stat(digest) is None  # finished but not committed
        assert await blob_digests(driver) == []
        await driver.commit_upload(upload_id, state, digest, len(data))
        assert await blob_digests(driver) == [digest]

    async def test_missing_blob(self, driver):
        assert await driver.stat(VALID_FAKE_DIGEST) is None
        with pytest.raises(BlobNotFound):
            await consume(lambda: driver.read(VALID_FAKE_DIGEST))
        with pytest.raises(BlobNotFound):
            await consume(lambda: driver.read(VALID_FAKE_DIGEST, 10, 10))
        assert await driver.delete(VALID_FAKE_DIGEST) is False

    async def test_commit_of_missing_upload(self, driver):
        data = b"never uploaded"
        with pytest.raises(BlobNotFound):
            await driver.commit_upload(new_upload_id(), {}, digest_of(data), len(data))
        assert await blob_digests(driver) == []
        assert await driver.stat(digest_of(data)) is None

    async def test_blob_not_found_is_a_storage_error(self, driver):
        assert issubclass(BlobNotFound, StorageError)

    # -- hostile names ---------------------------------------------------------------------

    @pytest.mark.parametrize("digest", INVALID_DIGESTS)
    async def test_invalid_digest_rejected(self, driver, digest):
        with pytest.raises(ValueError):
            await driver.stat(digest)
        with pytest.raises(ValueError):
            await consume(lambda: driver.read(digest))
        with pytest.raises(ValueError):
            await driver.delete(digest)
        upload_id, state = await upload(driver, b"payload")
        with pytest.raises(ValueError):
            await driver.commit_upload(upload_id, state, digest, 7)
        # the upload is untouched and can still be committed properly
        assert await consume(lambda: driver.read_upload(upload_id, state)) == b"payload"
        assert await blob_digests(driver) == []

    @pytest.mark.parametrize("upload_id", INVALID_UPLOAD_IDS)
    async def test_invalid_upload_id_rejected(self, driver, upload_id):
        with pytest.raises(ValueError):
            await driver.start_upload(upload_id)
        with pytest.raises(ValueError):
            await driver.upload_writer(upload_id, {}, 0)
        with pytest.raises(ValueError):
            await consume(lambda: driver.read_upload(upload_id, {}))
        with pytest.raises(ValueError):
            await driver.commit_upload(upload_id, {}, VALID_FAKE_DIGEST, 0)
        with pytest.raises(ValueError):
            await driver.cancel_upload(upload_id, {})
        assert await upload_ids(driver) == []
        assert await blob_digests(driver) == []

    # -- health ----------------------------------------------------------------------------

    async def test_check_passes_when_healthy(self, driver):
        await driver.check()
        await store(driver, b"still healthy")
        await driver.check()

    async def test_redirect_url_is_none_or_a_url(self, driver):
        digest = await store(driver, b"redirect")
        url = await driver.redirect_url(digest, "GET")
        assert url is None or url.startswith(("http://", "https://"))
