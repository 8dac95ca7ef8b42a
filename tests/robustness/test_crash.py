"""kill -9 while the registry receives data, then restart on the same data directory."""

from __future__ import annotations

import asyncio
import hashlib
import os
import random
import time

import httpx
import pytest

from tests.support.blobs import MiB
from tests.support.digests import sha256
from tests.support.http import error_code, parse_range, push_blob_chunked

pytestmark = pytest.mark.e2e


async def _wait_for(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


async def test_kill_mid_upload_then_restart(start_server):
    server = start_server()
    repo = "crash/app"

    # Blobs committed before the crash must all survive it.
    committed: dict[str, bytes] = {}
    async with httpx.AsyncClient(base_url=server.url, timeout=60) as client:
        for size in (0, 1, 1000, MiB + 3, 3 * MiB):
            data = os.urandom(size)
            r = await client.post(f"/v2/{repo}/blobs/uploads/", params={"digest": sha256(data)}, content=data)
            assert r.status_code == 201, r.text
            committed[sha256(data)] = data
        for _ in range(2):
            data = os.urandom(700_000)
            committed[await push_blob_chunked(client, repo, data)] = data

        data = os.urandom(64 * MiB)
        digest = sha256(data)
        r = await client.post(f"/v2/{repo}/blobs/uploads/")
        assert r.status_code == 202
        location = r.headers["Location"]
        upload_id = r.headers["Docker-Upload-UUID"]
        upload_file = server.upload_dir / upload_id

    async def body():
        # 48 MiB fast, then a slow tail: the server is still receiving when it dies.
        for start in range(0, 48 * MiB, MiB):
            yield data[start : start + MiB]
        for start in range(48 * MiB, len(data), 256 * 1024):
            await asyncio.sleep(0.1)
            yield data[start : start + 256 * 1024]

    patch_client = httpx.AsyncClient(base_url=server.url, timeout=60)
    patch = asyncio.create_task(
        patch_client.patch(location, content=body(), headers={"Content-Type": "application/octet-stream"})
    )
    try:
        await _wait_for(
            lambda: (upload_file.exists() and upload_file.stat().st_size >= 32 * MiB) or patch.done(),
            timeout=60,
            what="the server to store 32 MiB of the upload",
        )
        assert not patch.done(), f"PATCH ended early: {patch.result() if not patch.exception() else patch.exception()}"
        server.kill()
        with pytest.raises(httpx.HTTPError):
            await patch
    finally:
        patch.cancel()
        await patch_client.aclose()
    stored = upload_file.stat().st_size if upload_file.exists() else 0
    assert 0 < stored < len(data)

    server.start()  # same data directory, new process
    async with httpx.AsyncClient(base_url=server.url, timeout=60) as client:
        # The upload never completed: no blob.
        r = await client.head(f"/v2/{repo}/blobs/{digest}")
        assert r.status_code == 404

        # The session either resumes at an offset backed by stored bytes, or is unknown.
        r = await client.get(location)
        if r.status_code == 204:
            recorded = parse_range(r.headers["Range"])
            if r.headers["Range"] == "0-0":
                recorded = 0  # the interrupted PATCH was never recorded
            assert recorded <= stored, f"upload claims {recorded} bytes, {stored} are on disk"
            r = await client.patch(
                r.headers["Location"],
                content=data[recorded:],
                headers={"Content-Range": f"{recorded}-{len(data) - 1}", "Content-Type": "application/octet-stream"},
            )
            assert r.status_code == 202, r.text
            assert parse_range(r.headers["Range"]) == len(data)
            r = await client.put(r.headers["Location"], params={"digest": digest})
            assert r.status_code == 201, r.text
            r = await client.get(f"/v2/{repo}/blobs/{digest}")
            assert r.status_code == 200
            assert r.content == data
        else:
            assert r.status_code == 404, r.text
            assert error_code(r) == "BLOB_UPLOAD_UNKNOWN"

        # A fresh push of the same blob works in any case.
        r = await client.post(f"/v2/{repo}/blobs/uploads/")
        assert r.status_code == 202
        r = await client.patch(
            r.headers["Location"], content=data, headers={"Content-Type": "application/octet-stream"}
        )
        assert r.status_code == 202, r.text
        r = await client.put(r.headers["Location"], params={"digest": digest})
        assert r.status_code == 201, r.text
        async with client.stream("GET", f"/v2/{repo}/blobs/{digest}") as r:
            assert r.status_code == 200
            h = hashlib.sha256()
            async for chunk in r.aiter_bytes():
                h.update(chunk)
            assert "sha256:" + h.hexdigest() == digest

        for blob_digest, blob in committed.items():
            r = await client.get(f"/v2/{repo}/blobs/{blob_digest}")
            assert r.status_code == 200, blob_digest
            assert r.content == blob
        assert (await client.get("/healthz")).status_code == 200


async def test_kill_during_concurrent_pushes_serves_nothing_corrupt(start_server):
    server = start_server()
    attempted: dict[str, bytes] = {}
    succeeded: list[str] = []
    stop = asyncio.Event()

    async def pusher(n: int) -> None:
        rng = random.Random(n)
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
            i = 0
            while not stop.is_set():
                repo = f"load{n % 4}/app"
                data = rng.randbytes(rng.randrange(1, 400_000))
                digest = sha256(data)
                attempted[digest] = data
                try:
                    if i % 2:
                        r = await client.post(f"/v2/{repo}/blobs/uploads/", params={"digest": digest}, content=data)
                        ok = r.status_code == 201
                    else:
                        ok = await push_blob_chunked(client, repo, data, chunk=64 * 1024) == digest
                except (httpx.HTTPError, AssertionError):
                    return  # the server died under us
                if ok:
                    succeeded.append(digest)
                i += 1

    tasks = [asyncio.create_task(pusher(n)) for n in range(24)]
    try:
        await _wait_for(lambda: len(succeeded) >= 60, timeout=60, what="60 successful pushes")
        server.kill()
        stop.set()
        await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), 30)
    finally:
        for task in tasks:
            task.cancel()

    # Nothing on disk is corrupt: every blob file holds exactly the bytes its name says.
    for path in server.blob_files():
        assert hashlib.sha256(path.read_bytes()).hexdigest() == path.name, f"corrupt blob file {path}"

    server.start()
    present = 0
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
        for digest, data in attempted.items():
            for n in range(4):
                repo = f"load{n}/app"
                r = await client.head(f"/v2/{repo}/blobs/{digest}")
                if r.status_code == 404:
                    continue
                assert r.status_code == 200, r.text
                assert int(r.headers["Content-Length"]) == len(data)
                r = await client.get(f"/v2/{repo}/blobs/{digest}")
                assert r.status_code == 200
                assert sha256(r.content) == digest, "served bytes do not match the digest"
                present += 1
        for digest in succeeded:  # acknowledged before the kill: durable
            found = [(await client.head(f"/v2/load{n}/app/blobs/{digest}")).status_code for n in range(4)]
            assert 200 in found, f"acknowledged blob {digest} lost"
        assert present >= len(succeeded)
        # and the restarted registry accepts new pushes
        data = os.urandom(5000)
        r = await client.post("/v2/load0/app/blobs/uploads/", params={"digest": sha256(data)}, content=data)
        assert r.status_code == 201


async def test_crash_between_storage_commit_and_metadata(start_server):
    """`_commit` moves the upload data to its content address, then records it in the
    database. A crash between the two leaves the blob file in place, the upload data gone
    and the session row untouched. Reproduce that state exactly (kill -9, then do the
    rename the dead process had done) and check the session is consistent afterwards:
    unknown, or completable."""
    server = start_server()
    repo = "window/app"
    data = os.urandom(300_000)
    digest = sha256(data)
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
        r = await client.post(f"/v2/{repo}/blobs/uploads/")
        location = r.headers["Location"]
        upload_id = r.headers["Docker-Upload-UUID"]
        r = await client.patch(location, content=data, headers={"Content-Range": f"0-{len(data) - 1}"})
        assert r.status_code == 202
    server.kill()
    hex_ = digest.split(":", 1)[1]
    target = server.blob_dir / "sha256" / hex_[:2] / hex_
    target.parent.mkdir(parents=True, exist_ok=True)
    os.rename(server.upload_dir / upload_id, target)  # what commit_upload did before the crash

    server.start()
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
        r = await client.get(location)
        if r.status_code == 404:
            assert error_code(r) == "BLOB_UPLOAD_UNKNOWN"
        else:
            assert r.status_code == 204
            reported = parse_range(r.headers["Range"])
            # The session claims `reported` bytes: finishing it must work.
            r = await client.put(location, params={"digest": digest})
            assert r.status_code == 201, (
                f"upload status reported {reported} bytes, but the closing PUT failed: {r.status_code} {r.text}"
            )
            r = await client.get(f"/v2/{repo}/blobs/{digest}")
            assert r.content == data
        # Either way a fresh push succeeds and the blob is served intact.
        r = await client.post(f"/v2/{repo}/blobs/uploads/", params={"digest": digest}, content=data)
        assert r.status_code == 201, r.text
        r = await client.get(f"/v2/{repo}/blobs/{digest}")
        assert r.status_code == 200
        assert r.content == data


async def test_a_killed_writer_leaves_no_bytes_behind(start_server):
    """kill -9 while two uploads stream: a chunked session (part of it recorded) and a
    monolithic POST. After the restart the session's unrecorded bytes and the monolithic
    upload's partial file are reclaimed at once, and the session resumes where it was."""
    server = start_server()
    repo = "crash/reclaim"
    data = os.urandom(40 * MiB)
    digest = sha256(data)
    async with httpx.AsyncClient(base_url=server.url, timeout=60) as client:
        r = await client.post(f"/v2/{repo}/blobs/uploads/")
        location, session = r.headers["Location"], r.headers["Docker-Upload-UUID"]
        r = await client.patch(location, content=data[: 8 * MiB], headers={"Content-Range": f"0-{8 * MiB - 1}"})
        assert r.status_code == 202, r.text
        location = r.headers["Location"]
    uploads_before = set(server.upload_files())

    def slow(payload: bytes, fast: int):
        async def body():
            for start in range(0, fast, MiB):
                yield payload[start : start + MiB]
            for start in range(fast, len(payload), 64 * 1024):
                await asyncio.sleep(0.1)
                yield payload[start : start + 64 * 1024]

        return body()

    clients = [httpx.AsyncClient(base_url=server.url, timeout=60) for _ in range(2)]
    rest = data[8 * MiB :]
    requests = [
        asyncio.create_task(
            clients[0].patch(
                location, content=slow(rest, 16 * MiB), headers={"Content-Range": f"{8 * MiB}-{len(data) - 1}"}
            )
        ),
        asyncio.create_task(
            clients[1].post(f"/v2/{repo}/blobs/uploads/", params={"digest": digest}, content=slow(data, 12 * MiB))
        ),
    ]
    session_file = server.upload_dir / session
    try:
        await _wait_for(
            lambda: (
                session_file.stat().st_size >= 20 * MiB
                and any(p.stat().st_size >= 8 * MiB for p in set(server.upload_files()) - uploads_before)
            ),
            timeout=60,
            what="both uploads to be half stored",
        )
        server.kill()
        for request in requests:
            with pytest.raises(httpx.HTTPError):
                await request
    finally:
        for request in requests:
            request.cancel()
        for c in clients:
            await c.aclose()
    orphans = set(server.upload_files()) - {session_file}
    assert orphans and session_file.stat().st_size > 8 * MiB
    old = time.time() - 3600  # the monolithic upload's data was last written long ago
    for path in orphans:
        os.utime(path, (old, old))

    server.start()
    await _wait_for(
        lambda: session_file.stat().st_size == 8 * MiB and not any(p.exists() for p in orphans),
        timeout=15,
        what="the dead writers' bytes to be reclaimed",
    )
    async with httpx.AsyncClient(base_url=server.url, timeout=60) as client:
        r = await client.get(location)
        assert r.status_code == 204 and r.headers["Range"] == f"0-{8 * MiB - 1}"
        r = await client.patch(location, content=rest, headers={"Content-Range": f"{8 * MiB}-{len(data) - 1}"})
        assert r.status_code == 202, r.text
        r = await client.put(r.headers["Location"], params={"digest": digest})
        assert r.status_code == 201, r.text
        assert (await client.get(f"/v2/{repo}/blobs/{digest}")).content == data
