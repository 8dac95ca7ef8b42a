"""The shared driver suite on the S3 driver against a real SeaweedFS, plus S3 specifics:
multipart layout and part sizes, bounded memory, concurrent writers, server-side commits,
presigned redirects, and failure behaviour when S3 is down, slow or throttling."""

from __future__ import annotations

import asyncio
import gc
import hashlib
import os
import random
import socket
import subprocess
import sys
import threading
import time
import tracemalloc
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest
import pytest_asyncio

from registry.config import ConfigError, load_config
from storage import create_storage
from storage.base import BlobNotFound, StorageError, StorageUnavailable
from storage.s3 import MIN_PART, S3Storage
from tests.storage.driver_suite import (
    DriverSuite,
    blob_digests,
    consume,
    digest_of,
    new_upload_id,
    store,
    upload_ids,
    write_session,
)
from tests.support.s3 import S3_BUCKET, S3_ROOT_BUCKET
from tests.support.seaweedfs import ACCESS_KEY, REGION, SECRET_KEY

MiB = 1 << 20


def make_driver(server, **overrides) -> S3Storage:
    options = dict(
        region=REGION,
        endpoint_url=server.endpoint_url,
        access_key=ACCESS_KEY,
        secret_key=SECRET_KEY,
        root_prefix=f"t-{uuid.uuid4().hex[:12]}/",
        part_size=5 * MiB,
        concurrency=8,
    )
    options.update(overrides)
    return S3Storage(options.pop("bucket", S3_BUCKET), **options)


class TestS3Driver(DriverSuite):
    @pytest_asyncio.fixture
    async def driver(self, seaweedfs):
        d = make_driver(seaweedfs)
        await d.open()
        yield d
        await d.close()


# -- S3 specifics ------------------------------------------------------------------------------


@pytest_asyncio.fixture
async def s3(seaweedfs):
    d = make_driver(seaweedfs)
    await d.open()
    yield d
    await d.close()


@pytest.fixture(scope="module")
def raw(seaweedfs):
    """A plain boto3 client, to look at what the driver stored."""
    return seaweedfs.client()


def keys(raw, bucket: str, prefix: str) -> dict[str, int]:
    found = {}
    for page in raw.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for item in page.get("Contents", []):
            found[item["Key"][len(prefix) :]] = item["Size"]
    return found


def multipart_uploads(raw, bucket: str, prefix: str) -> list[dict]:
    return raw.list_multipart_uploads(Bucket=bucket, Prefix=prefix).get("Uploads", [])


def check_part_sizes(state: dict) -> None:
    parts = state.get("parts", [])
    assert all(size >= MIN_PART for _n, _etag, size in parts), parts
    assert state.get("tail_size", 0) < MIN_PART


async def test_layout(s3, raw):
    data = os.urandom(7 * MiB + 3)
    upload_id = new_upload_id()
    state = await write_session(s3, upload_id, await s3.start_upload(upload_id), 0, [data])
    stored = keys(raw, S3_BUCKET, s3.root_prefix)
    assert set(stored) == {f"uploads/{upload_id}/{state['tail']}"}
    assert [u["Key"] for u in multipart_uploads(raw, S3_BUCKET, s3.root_prefix)] == [
        f"{s3.root_prefix}uploads/{upload_id}/data"
    ]
    digest = digest_of(data)
    await s3.commit_upload(upload_id, state, digest, len(data))
    hex_ = digest.split(":", 1)[1]
    assert keys(raw, S3_BUCKET, s3.root_prefix) == {f"blobs/sha256/{hex_[:2]}/{hex_}": len(data)}
    assert multipart_uploads(raw, S3_BUCKET, s3.root_prefix) == []
    body = raw.get_object(Bucket=S3_BUCKET, Key=f"{s3.root_prefix}blobs/sha256/{hex_[:2]}/{hex_}")["Body"].read()
    assert body == data


async def test_multipart_across_writer_sessions_with_tail(s3, raw):
    rng = random.Random(1)
    upload_id = new_upload_id()
    state = await s3.start_upload(upload_id)
    prefix = f"{s3.root_prefix}uploads/{upload_id}/"
    data = b""

    # 3 MiB: below a part, all tail
    chunk = rng.randbytes(3 * MiB)
    state = await write_session(s3, upload_id, state, len(data), [chunk])
    data += chunk
    assert "mpu" not in state and state["tail_size"] == 3 * MiB
    assert keys(raw, S3_BUCKET, prefix) == {state["tail"]: 3 * MiB}

    # +4 MiB in 1 MiB writes: the writer reads the tail back, uploads one 5 MiB part, keeps 2 MiB
    chunk = rng.randbytes(4 * MiB)
    state = await write_session(s3, upload_id, state, len(data), [chunk[i : i + MiB] for i in range(0, 4 * MiB, MiB)])
    data += chunk
    assert [(n, size) for n, _etag, size in state["parts"]] == [(1, 5 * MiB)]
    assert state["tail_size"] == 2 * MiB
    listed = raw.list_parts(Bucket=S3_BUCKET, Key=prefix + "data", UploadId=state["mpu"])["Parts"]
    assert [(p["PartNumber"], p["ETag"].strip('"'), p["Size"]) for p in listed] == [
        (n, etag.strip('"'), size) for n, etag, size in state["parts"]
    ]

    # +9 MiB in one write: two more full parts, 1 MiB tail
    chunk = rng.randbytes(9 * MiB)
    state = await write_session(s3, upload_id, state, len(data), [chunk])
    data += chunk
    assert [(n, size) for n, _etag, size in state["parts"]] == [(1, 5 * MiB), (2, 5 * MiB), (3, 5 * MiB)]
    assert state["tail_size"] == MiB
    # superseded tails are removed by later writers; at most the previous one is left
    assert state["tail"] in keys(raw, S3_BUCKET, prefix)
    assert len([k for k in keys(raw, S3_BUCKET, prefix) if k.startswith("tail-")]) <= 2

    # +4 MiB: the 1 MiB tail and the new bytes make exactly one more part at finish, no tail
    chunk = rng.randbytes(4 * MiB)
    state = await write_session(s3, upload_id, state, len(data), [chunk])
    data += chunk
    assert [size for _n, _etag, size in state["parts"]] == [5 * MiB] * 4
    assert "tail" not in state
    check_part_sizes(state)

    assert await consume(lambda: s3.read_upload(upload_id, state)) == data
    digest = digest_of(data)
    await s3.commit_upload(upload_id, state, digest, len(data))
    assert await consume(lambda: s3.read(digest)) == data
    assert keys(raw, S3_BUCKET, prefix) == {}
    assert multipart_uploads(raw, S3_BUCKET, prefix) == []


async def test_parts_are_at_least_5mib_except_the_last(s3):
    rng = random.Random(2)
    upload_id = new_upload_id()
    state = await s3.start_upload(upload_id)
    data = bytearray()
    for _ in range(12):
        chunk = rng.randbytes(rng.randrange(100_000, 3 * MiB))
        writes = [chunk[: len(chunk) // 3], chunk[len(chunk) // 3 :]]
        state = await write_session(s3, upload_id, state, len(data), writes)
        data += chunk
        check_part_sizes(state)
        assert sum(size for _n, _e, size in state.get("parts", [])) + state.get("tail_size", 0) == len(data)
    assert len(state["parts"]) >= 2
    digest = digest_of(bytes(data))
    await s3.commit_upload(upload_id, state, digest, len(data))
    assert hashlib.sha256(await consume(lambda: s3.read(digest))).hexdigest() == digest.split(":")[1]


async def test_30mib_upload_in_4mib_buffers_keeps_memory_bounded(s3):
    """The registry writes ~4 MiB buffers; the writer must hold about one part, not the upload."""
    upload_id = new_upload_id()
    state = await s3.start_upload(upload_id)
    hasher = hashlib.sha256()
    total = 30 * MiB
    gc.collect()
    tracemalloc.start()
    try:
        writer = await s3.upload_writer(upload_id, state, 0)
        written = 0
        while written < total:
            buf = os.urandom(min(4 * MiB, total - written))  # (randbytes makes a 4 MiB int first)
            hasher.update(buf)
            await writer.write(buf)
            written += len(buf)
            del buf
        state = await writer.finish()
        _current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # a 5 MiB part being assembled or sent + two 4 MiB buffers (the caller's, and the rest
    # of the previous one); far below the 30 MiB of the upload
    assert peak < 16 * MiB, f"peak {peak / MiB:.1f} MiB"
    check_part_sizes(state)
    digest = f"sha256:{hasher.hexdigest()}"
    await s3.commit_upload(upload_id, state, digest, total)
    assert (await s3.stat(digest)).size == total


async def test_commit_of_an_existing_digest_does_not_rewrite(s3, raw):
    data = os.urandom(6 * MiB)
    digest = await store(s3, data)
    hex_ = digest.split(":", 1)[1]
    key = f"{s3.root_prefix}blobs/sha256/{hex_[:2]}/{hex_}"
    raw.put_object(Bucket=S3_BUCKET, Key=key, Body=b"marker")  # any rewrite would replace this
    upload_id = new_upload_id()
    state = await write_session(s3, upload_id, await s3.start_upload(upload_id), 0, [data])
    assert state["parts"]
    await s3.commit_upload(upload_id, state, digest, len(data))
    assert raw.get_object(Bucket=S3_BUCKET, Key=key)["Body"].read() == b"marker"
    assert upload_id not in await upload_ids(s3)
    assert multipart_uploads(raw, S3_BUCKET, f"{s3.root_prefix}uploads/") == []


async def test_redirect_urls_are_fetchable_and_expire(seaweedfs):
    d = make_driver(seaweedfs, redirect_expiry=1)
    await d.open()
    try:
        data = os.urandom(100_000)
        digest = await store(d, data)
        async with httpx.AsyncClient() as http:
            get_url = await d.redirect_url(digest, "GET")
            head_url = await d.redirect_url(digest, "HEAD")
            got = await http.get(get_url)
            assert got.status_code == 200 and got.content == data
            head = await http.head(head_url)
            assert head.status_code == 200 and int(head.headers["content-length"]) == len(data)
            ranged = await http.get(get_url, headers={"Range": "bytes=10-19"})
            assert ranged.status_code == 206 and ranged.content == data[10:20]
            await asyncio.sleep(2.1)
            assert (await http.get(get_url)).status_code == 403
    finally:
        await d.close()
    off = make_driver(seaweedfs, redirect=False)
    await off.open()
    try:
        assert await off.redirect_url(digest, "GET") is None
        with pytest.raises(ValueError):
            await off.redirect_url("sha256:../../x", "GET")
    finally:
        await off.close()


@pytest.mark.parametrize("kept", ["first", "second"])
async def test_concurrent_writers_of_one_session_cannot_corrupt(s3, raw, kept):
    """Two writers resume the same state at once (as two replicas could); the registry keeps
    one state. Committing it gives exactly its bytes, or fails; never a mix."""
    rng = random.Random(4)
    upload_id = new_upload_id()
    head = rng.randbytes(6 * MiB)  # a part and a tail
    base = await write_session(s3, upload_id, await s3.start_upload(upload_id), 0, [head])
    first_data, second_data = rng.randbytes(7 * MiB), rng.randbytes(7 * MiB)
    first = await s3.upload_writer(upload_id, base, len(head))
    second = await s3.upload_writer(upload_id, base, len(head))
    # interleaved: both upload part 2 of the same multipart upload
    await first.write(first_data[: 4 * MiB])
    await second.write(second_data[: 4 * MiB])
    await first.write(first_data[4 * MiB :])
    await second.write(second_data[4 * MiB :])
    first_state = await first.finish()
    second_state = await second.finish()
    assert first_state["tail"] != second_state["tail"]
    assert first_state["parts"][1][0] == second_state["parts"][1][0] == 2
    state, data = (first_state, head + first_data) if kept == "first" else (second_state, head + second_data)
    digest = digest_of(data)
    try:
        await s3.commit_upload(upload_id, state, digest, len(data))
    except StorageError as e:  # what AWS S3 does when the kept state's part was overwritten
        assert "concurrent" in str(e)
        assert await s3.stat(digest) is None
        return
    assert await consume(lambda: s3.read(digest)) == data


async def test_abort_keeps_the_previous_state_valid(s3):
    rng = random.Random(5)
    upload_id = new_upload_id()
    head = rng.randbytes(6 * MiB)
    state = await write_session(s3, upload_id, await s3.start_upload(upload_id), 0, [head])
    writer = await s3.upload_writer(upload_id, state, len(head))
    await writer.write(rng.randbytes(11 * MiB))  # uploads parts 2 and 3, then fails
    await writer.abort()
    with pytest.raises(StorageError):
        await writer.write(b"x")
    rest = rng.randbytes(2 * MiB)
    state = await write_session(s3, upload_id, state, len(head), [rest])
    digest = digest_of(head + rest)
    await s3.commit_upload(upload_id, state, digest, len(head) + len(rest))
    assert await consume(lambda: s3.read(digest)) == head + rest


async def test_read_upload_then_keep_writing(s3, raw):
    """read_upload must complete the multipart upload (its parts cannot be read otherwise);
    the session goes on from the completed object, and can be read and committed again."""
    rng = random.Random(6)
    upload_id = new_upload_id()
    data = rng.randbytes(7 * MiB)
    state = await write_session(s3, upload_id, await s3.start_upload(upload_id), 0, [data])
    assert await consume(lambda: s3.read_upload(upload_id, state)) == data
    assert await consume(lambda: s3.read_upload(upload_id, state)) == data  # twice
    more = rng.randbytes(3 * MiB)
    state2 = await write_session(s3, upload_id, state, len(data), [more])
    data += more
    check_part_sizes(state2)
    assert state2["mpu"] != state["mpu"]
    assert await consume(lambda: s3.read_upload(upload_id, state2)) == data
    digest = digest_of(data, "sha512")
    await s3.commit_upload(upload_id, state2, digest, len(data))
    assert await consume(lambda: s3.read(digest)) == data
    assert keys(raw, S3_BUCKET, f"{s3.root_prefix}uploads/") == {}
    assert multipart_uploads(raw, S3_BUCKET, f"{s3.root_prefix}uploads/") == []


async def test_read_upload_of_another_writers_completion_is_refused(s3):
    """A completed multipart upload that is not exactly this state's parts and tail (a sibling
    writer's) is never taken for this state's bytes."""
    rng = random.Random(7)
    upload_id = new_upload_id()
    head = rng.randbytes(6 * MiB)
    base = await write_session(s3, upload_id, await s3.start_upload(upload_id), 0, [head])
    a = await write_session(s3, upload_id, base, len(head), [rng.randbytes(2 * MiB)])
    b = await write_session(s3, upload_id, base, len(head), [rng.randbytes(2 * MiB)])
    assert len(await consume(lambda: s3.read_upload(upload_id, b))) == len(head) + 2 * MiB
    with pytest.raises(BlobNotFound):
        await consume(lambda: s3.read_upload(upload_id, a))
    with pytest.raises(BlobNotFound):
        await s3.upload_writer(upload_id, a, len(head) + 2 * MiB)


async def test_commit_is_idempotent_across_crashes(s3, raw, monkeypatch):
    rng = random.Random(8)
    data = rng.randbytes(8 * MiB)
    digest = digest_of(data)
    upload_id = new_upload_id()
    state = await write_session(s3, upload_id, await s3.start_upload(upload_id), 0, [data])

    # a crash after the multipart upload was completed, before the copy
    real_copy = s3._copy

    async def crash(*args, **kwargs):
        raise RuntimeError("crash")

    monkeypatch.setattr(s3, "_copy", crash)
    with pytest.raises(RuntimeError):
        await s3.commit_upload(upload_id, state, digest, len(data))
    assert await s3.stat(digest) is None
    monkeypatch.setattr(s3, "_copy", real_copy)

    # a crash after the copy, before the cleanup: the blob is whole, the leftovers listed
    monkeypatch.setattr(s3, "_purge_upload", crash)
    with pytest.raises(RuntimeError):
        await s3.commit_upload(upload_id, state, digest, len(data))
    assert await consume(lambda: s3.read(digest)) == data
    assert upload_id in await upload_ids(s3)
    monkeypatch.undo()

    await s3.commit_upload(upload_id, state, digest, len(data))  # the registry's retry
    assert await consume(lambda: s3.read(digest)) == data
    assert upload_id not in await upload_ids(s3)
    assert keys(raw, S3_BUCKET, f"{s3.root_prefix}uploads/") == {}


async def test_large_blob_is_copied_in_parts(seaweedfs, raw):
    d = make_driver(seaweedfs, copy_threshold=6 * MiB)  # stands in for CopyObject's 5 GiB limit
    await d.open()
    try:
        data = os.urandom(13 * MiB + 1)
        digest = digest_of(data)
        for pieces in (1, 3):
            upload_id = new_upload_id()
            state = await d.start_upload(upload_id)
            step = -(-len(data) // pieces)
            for i in range(0, len(data), step):
                state = await write_session(d, upload_id, state, i, [data[i : i + step]])
            await d.commit_upload(upload_id, state, digest, len(data))
            assert await consume(lambda: d.read(digest, 5 * MiB - 3, 2 * MiB)) == data[5 * MiB - 3 : 7 * MiB - 3]
            assert await consume(lambda: d.read(digest)) == data
            assert await d.delete(digest)
        assert multipart_uploads(raw, S3_BUCKET, d.root_prefix) == []
    finally:
        await d.close()


async def test_multipart_only_session_is_listed_and_cancelled(s3, raw):
    upload_id = new_upload_id()
    state = await write_session(s3, upload_id, await s3.start_upload(upload_id), 0, [os.urandom(5 * MiB)])
    assert "tail" not in state and len(state["parts"]) == 1
    listed = {uid: modified async for uid, modified in s3.list_uploads()}
    assert listed.keys() == {upload_id}
    assert abs(listed[upload_id] - time.time()) < 300
    await s3.cancel_upload(upload_id, {})  # as the purge does: no state
    assert await upload_ids(s3) == []
    assert multipart_uploads(raw, S3_BUCKET, s3.root_prefix) == []
    with pytest.raises(BlobNotFound):
        await s3.upload_writer(upload_id, state, 5 * MiB)
    with pytest.raises(BlobNotFound):
        await s3.commit_upload(upload_id, state, digest_of(b"x"), 5 * MiB)


async def test_bucket_root_without_prefix(seaweedfs, raw):
    d = make_driver(seaweedfs, bucket=S3_ROOT_BUCKET, root_prefix="")
    await d.open()
    try:
        raw.put_object(Bucket=S3_ROOT_BUCKET, Key="unrelated/object", Body=b"not ours")
        raw.put_object(Bucket=S3_ROOT_BUCKET, Key="blobs/sha256/zz/not-a-digest", Body=b"not ours")
        digest = await store(d, os.urandom(6 * MiB), pieces=2)
        upload_id = new_upload_id()
        state = await write_session(d, upload_id, await d.start_upload(upload_id), 0, [b"pending"])
        assert await blob_digests(d) == [digest]
        assert await upload_ids(d) == [upload_id]
        hex_ = digest.split(":", 1)[1]
        assert set(keys(raw, S3_ROOT_BUCKET, "")) == {
            "unrelated/object",
            "blobs/sha256/zz/not-a-digest",
            f"blobs/sha256/{hex_[:2]}/{hex_}",
            f"uploads/{upload_id}/{state['tail']}",
        }
        await d.cancel_upload(upload_id, state)
        assert await d.delete(digest)
        assert set(keys(raw, S3_ROOT_BUCKET, "")) == {"unrelated/object", "blobs/sha256/zz/not-a-digest"}
    finally:
        await d.close()


async def test_check_names_the_problem(seaweedfs):
    missing = make_driver(seaweedfs, bucket="no-such-bucket")
    wrong_secret = make_driver(seaweedfs, secret_key="wrong")
    for d, expected in ((missing, "no-such-bucket"), (wrong_secret, S3_BUCKET)):
        await d.open()
        try:
            with pytest.raises(StorageError) as e:
                await d.check()
            assert not isinstance(e.value, StorageUnavailable)
            assert expected in str(e.value)
        finally:
            await d.close()
    await wrong_secret.open()
    try:
        with pytest.raises(StorageError, match=r"denied|Signature|Access"):
            await store(wrong_secret, b"x")
    finally:
        await wrong_secret.close()


def _check_config(tmp_path, **env: str):
    """`okura check-config` (a real process) with these OKURA_* variables only."""
    okura = os.path.join(os.path.dirname(sys.executable), "okura")
    clean = {k: v for k, v in os.environ.items() if not k.startswith("OKURA_")}
    return subprocess.run(
        [okura, "check-config", "--data-dir", str(tmp_path / "data")],
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_check_config_reports_missing_bucket_and_unreachable_endpoint(seaweedfs, tmp_path):
    """`okura check-config` reaches the object store: a missing bucket and an endpoint nobody
    listens on each fail it (exit 1) with one line naming the bucket or the endpoint."""
    s3 = {
        "OKURA_STORAGE_DRIVER": "s3",
        "OKURA_STORAGE_S3_BUCKET": S3_BUCKET,
        "OKURA_STORAGE_S3_ENDPOINT_URL": seaweedfs.endpoint_url,
        "OKURA_STORAGE_S3_ACCESS_KEY": ACCESS_KEY,
        "OKURA_STORAGE_S3_SECRET_KEY": SECRET_KEY,
    }
    ok = _check_config(tmp_path, **s3)
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.startswith("config: ok (storage=s3 ")
    assert f"storage: s3 bucket {S3_BUCKET}: reachable" in ok.stdout.splitlines()

    missing = _check_config(tmp_path, **{**s3, "OKURA_STORAGE_S3_BUCKET": "no-such-bucket"})
    assert missing.returncode == 1, missing.stdout
    lines = missing.stderr.splitlines()
    assert len(lines) == 1, missing.stderr
    assert lines[0].startswith("error: storage: s3: ")
    assert "bucket 'no-such-bucket' does not exist" in lines[0] and seaweedfs.endpoint_url in lines[0]

    endpoint = f"http://127.0.0.1:{_closed_port()}"
    start = time.monotonic()
    down = _check_config(tmp_path, **{**s3, "OKURA_STORAGE_S3_ENDPOINT_URL": endpoint})
    assert time.monotonic() - start < 20, "check-config took too long to give up on a closed port"
    assert down.returncode == 1, down.stdout
    lines = down.stderr.splitlines()
    assert len(lines) == 1, down.stderr
    assert lines[0].startswith("error: storage: s3: ")
    assert "unreachable" in lines[0] and endpoint in lines[0]


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def test_s3_down_raises_storage_unavailable_quickly(seaweedfs):
    endpoint = f"http://127.0.0.1:{_closed_port()}"
    d = make_driver(seaweedfs, endpoint_url=endpoint)  # default retries and timeouts
    await d.open()
    try:
        start = time.monotonic()
        with pytest.raises(StorageUnavailable, match="unreachable"):
            await d.check()
        assert time.monotonic() - start < 8
    finally:
        await d.close()
    d = make_driver(seaweedfs, endpoint_url=endpoint, max_attempts=1)
    await d.open()
    try:
        digest = digest_of(b"x")
        with pytest.raises(StorageUnavailable):
            await d.stat(digest)
        with pytest.raises(StorageUnavailable):
            await consume(lambda: d.read(digest))
        assert (await d.redirect_url(digest, "GET")).startswith(endpoint)  # presigning needs no network
        with pytest.raises(StorageUnavailable):
            await d.delete(digest)
        upload_id = new_upload_id()
        with pytest.raises(StorageUnavailable):
            await write_session(d, upload_id, await d.start_upload(upload_id), 0, [b"abc"])
        with pytest.raises(StorageUnavailable):
            await consume(d.list_uploads)
    finally:
        await d.close()


class _FakeS3(BaseHTTPRequestHandler):
    """Bucket "slow": every request waits, then 404. Bucket "busy": 503 SlowDown."""

    protocol_version = "HTTP/1.1"

    def _answer(self) -> None:
        srv = self.server
        with srv.lock:
            srv.requests += 1
            srv.active += 1
            srv.peak = max(srv.peak, srv.active)
        try:
            length = int(self.headers.get("content-length") or 0)
            if length:
                self.rfile.read(length)
            if self.path.startswith("/slow"):
                time.sleep(srv.delay)
                self.send_response(404)
                self.send_header("Content-Length", "0")
                self.end_headers()
            else:
                body = b"<Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message></Error>"
                self.send_response(503)
                self.send_header("Content-Type", "application/xml")
                self.send_header("Content-Length", str(len(body) if self.command != "HEAD" else 0))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)
        finally:
            with srv.lock:
                srv.active -= 1

    do_GET = do_HEAD = do_PUT = do_POST = do_DELETE = _answer

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def fake_s3():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _FakeS3)
    server.daemon_threads = True
    server.lock, server.requests, server.active, server.peak, server.delay = threading.Lock(), 0, 0, 0, 0.4
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


async def test_slow_s3_never_stalls_the_event_loop_and_calls_are_bounded(fake_s3):
    d = S3Storage(
        "slow",
        endpoint_url=f"http://127.0.0.1:{fake_s3.server_address[1]}",
        access_key="k",
        secret_key="s",
        concurrency=2,
        max_attempts=1,
    )
    await d.open()
    lags = []

    async def ticker(stop: asyncio.Event) -> None:
        while not stop.is_set():
            before = time.monotonic()
            await asyncio.sleep(0.01)
            lags.append(time.monotonic() - before - 0.01)

    try:
        stop = asyncio.Event()
        tick = asyncio.create_task(ticker(stop))
        start = time.monotonic()
        results = await asyncio.gather(*(d.stat(digest_of(bytes([i]))) for i in range(4)))
        elapsed = time.monotonic() - start
        stop.set()
        await tick
    finally:
        await d.close()
    assert results == [None] * 4
    assert fake_s3.peak <= 2  # `concurrency` bounds the calls in flight
    assert elapsed >= 2 * fake_s3.delay - 0.05  # so 4 calls took two rounds
    assert max(lags) < 0.2, max(lags)  # the event loop kept running meanwhile


async def test_throttling_is_retried_then_unavailable(fake_s3):
    d = S3Storage(
        "busy",
        endpoint_url=f"http://127.0.0.1:{fake_s3.server_address[1]}",
        access_key="k",
        secret_key="s",
        max_attempts=2,
    )
    await d.open()
    try:
        with pytest.raises(StorageUnavailable, match="SlowDown"):
            await consume(lambda: d.read(digest_of(b"x")))
        assert fake_s3.requests == d.max_attempts > 1
        with pytest.raises(StorageUnavailable):
            await d.check()
    finally:
        await d.close()


def test_config_builds_the_driver():
    env = {
        "OKURA_STORAGE_DRIVER": "s3",
        "OKURA_STORAGE_S3_BUCKET": "registry",
        "OKURA_STORAGE_S3_ENDPOINT_URL": "http://127.0.0.1:8333",
        "OKURA_STORAGE_S3_ACCESS_KEY": "ak",
        "OKURA_STORAGE_S3_SECRET_KEY": "sk",
        "OKURA_STORAGE_S3_REGION": "eu-west-1",
        "OKURA_STORAGE_S3_REDIRECT": "false",
        "OKURA_STORAGE_S3_ROOT_PREFIX": "/okura/",
        "OKURA_STORAGE_S3_PART_SIZE": "32MiB",
        "OKURA_STORAGE_S3_REDIRECT_EXPIRY": "5m",
    }
    cfg = load_config(environ=env)
    d = create_storage(cfg.storage.driver, {"root": cfg.storage_root, "s3": cfg.storage.s3})
    assert isinstance(d, S3Storage)
    assert (d.bucket, d.region, d.endpoint_url) == ("registry", "eu-west-1", "http://127.0.0.1:8333")
    assert (d.root_prefix, d.part_size, d.redirect, d.redirect_expiry) == ("okura/", 32 * MiB, False, 300)
    assert d.path_style is True and d.concurrency == 16
    with pytest.raises(ValueError):
        create_storage("s3", {"root": "/x"})
    for bad, where in (
        ({"OKURA_STORAGE_S3_BUCKET": ""}, "storage.s3.bucket"),
        ({"OKURA_STORAGE_S3_PART_SIZE": "4MiB"}, "storage.s3.part_size"),
        ({"OKURA_STORAGE_S3_CONCURRENCY": "0"}, "storage.s3.concurrency"),
        ({"OKURA_STORAGE_S3_SECRET_KEY": ""}, "storage.s3.access_key"),
        ({"OKURA_STORAGE_S3_REDIRECT_EXPIRY": "8d"}, "storage.s3.redirect_expiry"),
        ({"OKURA_STORAGE_S3_ENDPOINT_URL": "127.0.0.1:8333"}, "storage.s3.endpoint_url"),
    ):
        with pytest.raises(ConfigError, match=rf"^{where} \(OKURA_[A-Z0-9_]+\): "):
            load_config(environ={**env, **bad})
    # the bucket is only required when the driver is s3
    assert load_config(environ={"OKURA_STORAGE_S3_PART_SIZE": "4MiB"}).storage.driver == "filesystem"
