"""/v2/<name>/blobs/uploads/: sessions (POST, PATCH, PUT, GET, DELETE), monolithic uploads,
cross-repository mounts and digest verification."""

from __future__ import annotations

import os

import httpx

from tests.support.digests import sha256
from tests.support.http import assert_error, push_blob, relative

REPO = "uploads/repo"
SOURCE = "uploads/source"
UPLOADS_PREFIX = f"/v2/{REPO}/blobs/uploads/"


async def start(client, repo: str = REPO) -> httpx.Response:
    r = await client.post(f"/v2/{repo}/blobs/uploads/")
    assert r.status_code == 202, r.text
    return r


def session_of(r: httpx.Response) -> str:
    return relative(r.headers["Location"])


def assert_session_headers(r: httpx.Response, size: int, repo: str = REPO) -> None:
    location = r.headers["Location"]
    assert location.startswith(f"/v2/{repo}/blobs/uploads/"), location  # relative
    session_id = location.split("?")[0].rsplit("/", 1)[1]
    assert session_id
    assert r.headers["Docker-Upload-UUID"] == session_id
    assert r.headers["Range"] == f"0-{max(size - 1, 0)}"
    assert r.headers["Content-Length"] == "0"


# -- starting -------------------------------------------------------------------------------------


async def test_post_starts_session_and_status_reports_progress(client):
    r = await start(client)
    assert_session_headers(r, 0)
    assert r.content == b""
    session = session_of(r)
    # Every POST starts a distinct session.
    assert session_of(await start(client)) != session
    r = await client.get(session)
    assert r.status_code == 204
    assert r.content == b""
    assert_session_headers(r, 0)
    assert session_of(r) == session
    await client.patch(session, content=b"x" * 10)
    r = await client.get(session)
    assert r.status_code == 204
    assert_session_headers(r, 10)


async def test_monolithic_post_with_digest(client):
    data = os.urandom(2048)
    digest = sha256(data)
    r = await client.post(
        f"/v2/{REPO}/blobs/uploads/",
        params={"digest": digest},
        content=data,
        headers={"Content-Type": "application/octet-stream"},
    )
    assert r.status_code == 201, r.text
    assert r.headers["Location"] == f"/v2/{REPO}/blobs/{digest}"
    assert r.headers["Docker-Content-Digest"] == digest
    assert r.headers["Content-Length"] == "0"
    assert (await client.get(f"/v2/{REPO}/blobs/{digest}")).content == data


async def test_monolithic_post_streamed_without_content_length(client):
    data = os.urandom(100_000)

    async def body():
        for i in range(0, len(data), 7000):
            yield data[i : i + 7000]

    r = await client.post(f"/v2/{REPO}/blobs/uploads/", params={"digest": sha256(data)}, content=body())
    assert r.status_code == 201, r.text
    assert (await client.get(f"/v2/{REPO}/blobs/{sha256(data)}")).content == data


async def test_monolithic_post_with_wrong_digest_stores_nothing(client):
    data = b"monolithic payload"
    wrong = sha256(b"something else")
    r = await client.post(f"/v2/{REPO}/blobs/uploads/", params={"digest": wrong}, content=data)
    assert_error(r, 400, "DIGEST_INVALID")
    assert_error(await client.head(f"/v2/{REPO}/blobs/{wrong}"), 404)
    assert_error(await client.head(f"/v2/{REPO}/blobs/{sha256(data)}"), 404)


# -- mounting -------------------------------------------------------------------------------------


async def test_mount_from_source_is_201(client):
    digest = await push_blob(client, SOURCE, b"mounted content")
    r = await client.post(f"/v2/{REPO}/blobs/uploads/", params={"mount": digest, "from": SOURCE})
    assert r.status_code == 201, r.text
    assert r.headers["Location"] == f"/v2/{REPO}/blobs/{digest}"
    assert r.headers["Docker-Content-Digest"] == digest
    assert (await client.get(f"/v2/{REPO}/blobs/{digest}")).content == b"mounted content"


async def test_mount_falls_back_to_session_when_source_lacks_blob(client):
    await push_blob(client, SOURCE, b"unrelated")
    data = b"not in source"
    r = await client.post(f"/v2/{REPO}/blobs/uploads/", params={"mount": sha256(data), "from": SOURCE})
    assert r.status_code == 202, r.text
    assert_session_headers(r, 0)
    # The fallback session is a normal one.
    r = await client.put(session_of(r), params={"digest": sha256(data)}, content=data)
    assert r.status_code == 201, r.text
    assert (await client.get(f"/v2/{REPO}/blobs/{sha256(data)}")).content == data


async def test_mount_without_from_finds_blob_anywhere(client):
    digest = await push_blob(client, SOURCE, b"discoverable")
    r = await client.post(f"/v2/{REPO}/blobs/uploads/", params={"mount": digest})
    assert r.status_code == 201, r.text
    assert r.headers["Location"] == f"/v2/{REPO}/blobs/{digest}"
    assert (await client.get(f"/v2/{REPO}/blobs/{digest}")).content == b"discoverable"


async def test_mount_fallbacks(client):
    digest = await push_blob(client, SOURCE, b"source blob")
    # from a repository that does not exist
    r = await client.post(f"/v2/{REPO}/blobs/uploads/", params={"mount": digest, "from": "does/not/exist"})
    assert r.status_code == 202, r.text
    assert_session_headers(r, 0)
    assert_error(await client.head(f"/v2/{REPO}/blobs/{digest}"), 404)
    # without from, of a blob no repository has
    r = await client.post(f"/v2/{REPO}/blobs/uploads/", params={"mount": sha256(b"nowhere")})
    assert r.status_code == 202, r.text
    assert_session_headers(r, 0)
    # of a blob deleted from the source
    assert (await client.delete(f"/v2/{SOURCE}/blobs/{digest}")).status_code == 202
    r = await client.post(f"/v2/{REPO}/blobs/uploads/", params={"mount": digest, "from": SOURCE})
    assert r.status_code == 202, r.text
    assert_error(await client.head(f"/v2/{REPO}/blobs/{digest}"), 404)


# -- PATCH ----------------------------------------------------------------------------------------


async def test_patch_with_content_range_and_length(client):
    data = os.urandom(300)
    r = await client.patch(
        session_of(await start(client)),
        content=data[:100],
        headers={"Content-Range": "0-99", "Content-Length": "100", "Content-Type": "application/octet-stream"},
    )
    assert r.status_code == 202, r.text
    assert_session_headers(r, 100)
    r = await client.patch(session_of(r), content=data[100:], headers={"Content-Range": "100-299"})
    assert r.status_code == 202, r.text
    assert_session_headers(r, 300)
    r = await client.put(session_of(r), params={"digest": sha256(data)})
    assert r.status_code == 201, r.text
    assert (await client.get(f"/v2/{REPO}/blobs/{sha256(data)}")).content == data


async def test_patch_without_content_range(client):
    data = os.urandom(1000)
    session = session_of(await start(client))
    r = await client.patch(session, content=data[:400])
    assert r.status_code == 202, r.text
    assert_session_headers(r, 400)
    r = await client.patch(session_of(r), content=data[400:])
    assert r.status_code == 202, r.text
    assert_session_headers(r, 1000)
    r = await client.put(session_of(r), params={"digest": sha256(data)})
    assert r.status_code == 201, r.text
    assert (await client.get(f"/v2/{REPO}/blobs/{sha256(data)}")).content == data


async def test_patch_without_content_range_or_length(client):
    """A streamed (chunked transfer encoding) PATCH body of unknown length."""
    data = os.urandom(200_000)

    async def body():
        for i in range(0, len(data), 16384):
            yield data[i : i + 16384]

    r = await client.patch(session_of(await start(client)), content=body())
    assert r.status_code == 202, r.text
    assert "content-length" not in r.request.headers
    assert_session_headers(r, len(data))
    r = await client.put(session_of(r), params={"digest": sha256(data)})
    assert r.status_code == 201, r.text
    assert (await client.get(f"/v2/{REPO}/blobs/{sha256(data)}")).content == data


async def test_empty_patch_keeps_session(client):
    session = session_of(await start(client))
    r = await client.patch(session, content=b"")
    assert r.status_code == 202, r.text
    assert_session_headers(r, 0)
    r = await client.patch(session, content=b"abc")
    assert r.status_code == 202
    assert_session_headers(r, 3)


async def test_out_of_order_patch_is_416_and_session_survives(client):
    data = os.urandom(64)
    session = session_of(await start(client))
    r = await client.patch(session, content=data[:32], headers={"Content-Range": "0-31"})
    assert r.status_code == 202
    # A gap, then a repeat of the first chunk: both out of order.
    for content_range, chunk in (("40-63", data[40:]), ("0-31", data[:32]), ("10-41", data[10:42])):
        r = await client.patch(session, content=chunk, headers={"Content-Range": content_range})
        assert_error(r, 416)
    r = await client.get(session)
    assert r.status_code == 204
    assert_session_headers(r, 32)
    r = await client.patch(session_of(r), content=data[32:], headers={"Content-Range": "32-63"})
    assert r.status_code == 202
    assert_session_headers(r, 64)
    r = await client.put(session_of(r), params={"digest": sha256(data)})
    assert r.status_code == 201, r.text
    assert (await client.get(f"/v2/{REPO}/blobs/{sha256(data)}")).content == data


# -- PUT ------------------------------------------------------------------------------------------


async def test_put_with_whole_blob_and_no_patch(client):
    data = os.urandom(500)
    r = await client.put(
        session_of(await start(client)),
        params={"digest": sha256(data)},
        content=data,
        headers={"Content-Type": "application/octet-stream"},
    )
    assert r.status_code == 201, r.text
    assert r.headers["Location"] == f"/v2/{REPO}/blobs/{sha256(data)}"
    assert r.headers["Docker-Content-Digest"] == sha256(data)
    assert r.headers["Content-Length"] == "0"


async def test_put_with_last_chunk_without_content_range(client):
    data = os.urandom(900)
    r = await client.patch(session_of(await start(client)), content=data[:600])
    r = await client.put(session_of(r), params={"digest": sha256(data)}, content=data[600:])
    assert r.status_code == 201, r.text
    assert (await client.get(f"/v2/{REPO}/blobs/{sha256(data)}")).content == data


async def test_put_with_last_chunk_and_content_range(client):
    data = os.urandom(900)
    r = await client.patch(session_of(await start(client)), content=data[:600], headers={"Content-Range": "0-599"})
    r = await client.put(
        session_of(r),
        params={"digest": sha256(data)},
        content=data[600:],
        headers={"Content-Range": "600-899", "Content-Length": "300"},
    )
    assert r.status_code == 201, r.text
    assert (await client.get(f"/v2/{REPO}/blobs/{sha256(data)}")).content == data


async def test_put_of_empty_blob(client):
    r = await client.put(session_of(await start(client)), params={"digest": sha256(b"")})
    assert r.status_code == 201, r.text
    r = await client.get(f"/v2/{REPO}/blobs/{sha256(b'')}")
    assert r.status_code == 200
    assert r.content == b""


async def test_put_with_wrong_digest_is_400_and_stores_nothing(client):
    data = os.urandom(128)
    wrong = sha256(b"not the data")
    r = await client.patch(session_of(await start(client)), content=data)
    session = session_of(r)
    r = await client.put(session, params={"digest": wrong})
    assert_error(r, 400, "DIGEST_INVALID")
    assert_error(await client.head(f"/v2/{REPO}/blobs/{wrong}"), 404)
    assert_error(await client.get(f"/v2/{REPO}/blobs/{wrong}"), 404, "BLOB_UNKNOWN")
    assert_error(await client.head(f"/v2/{REPO}/blobs/{sha256(data)}"), 404)


async def test_put_with_wrong_digest_and_body_stores_nothing(client):
    data = os.urandom(128)
    wrong = sha256(b"not the data")
    r = await client.put(session_of(await start(client)), params={"digest": wrong}, content=data)
    assert_error(r, 400, "DIGEST_INVALID")
    assert_error(await client.head(f"/v2/{REPO}/blobs/{wrong}"), 404)
    assert_error(await client.head(f"/v2/{REPO}/blobs/{sha256(data)}"), 404)


async def test_put_without_or_with_malformed_digest_is_400(client):
    r = await client.put(session_of(await start(client)), content=b"abc")
    assert_error(r, 400, "DIGEST_INVALID")
    r = await client.put(session_of(await start(client)), params={"digest": "sha256:xyz"}, content=b"abc")
    assert_error(r, 400, "DIGEST_INVALID")


async def test_completed_session_is_gone(client):
    data = b"complete me"
    session = session_of(await start(client))
    assert (await client.put(session, params={"digest": sha256(data)}, content=data)).status_code == 201
    assert_error(await client.get(session), 404, "BLOB_UPLOAD_UNKNOWN")
    assert_error(await client.patch(session, content=b"more"), 404, "BLOB_UPLOAD_UNKNOWN")
    assert_error(await client.put(session, params={"digest": sha256(data)}), 404, "BLOB_UPLOAD_UNKNOWN")


async def test_blob_pushed_twice_is_fine(client):
    data = b"twice"
    for _ in range(2):
        r = await client.put(session_of(await start(client)), params={"digest": sha256(data)}, content=data)
        assert r.status_code == 201, r.text
    assert (await client.get(f"/v2/{REPO}/blobs/{sha256(data)}")).content == data


# -- status and cancel ----------------------------------------------------------------------------


async def test_delete_upload_is_204_then_unknown(client):
    session = session_of(await start(client))
    await client.patch(session, content=b"abandoned")
    r = await client.delete(session)
    assert r.status_code == 204
    assert r.content == b""
    assert_error(await client.get(session), 404, "BLOB_UPLOAD_UNKNOWN")
    assert_error(await client.patch(session, content=b"more"), 404, "BLOB_UPLOAD_UNKNOWN")
    assert_error(await client.put(session, params={"digest": sha256(b"abandoned")}), 404, "BLOB_UPLOAD_UNKNOWN")
    assert_error(await client.delete(session), 404, "BLOB_UPLOAD_UNKNOWN")
    assert_error(await client.head(f"/v2/{REPO}/blobs/{sha256(b'abandoned')}"), 404)


async def test_unknown_session_is_404(client):
    await start(client)
    for session_id in ("0b8ca1f3-6e44-4c57-9d5b-2f1a4a1b7d90", "nonexistent", "x" * 64):
        path = f"{UPLOADS_PREFIX}{session_id}"
        assert_error(await client.get(path), 404, "BLOB_UPLOAD_UNKNOWN")
        assert_error(await client.patch(path, content=b"x"), 404, "BLOB_UPLOAD_UNKNOWN")
        assert_error(await client.put(path, params={"digest": sha256(b"x")}, content=b"x"), 404, "BLOB_UPLOAD_UNKNOWN")
        assert_error(await client.delete(path), 404, "BLOB_UPLOAD_UNKNOWN")


async def test_session_belongs_to_its_repository(client):
    session = session_of(await start(client))
    session_id = session.split("?")[0].rsplit("/", 1)[1]
    await start(client, SOURCE)
    foreign = f"/v2/{SOURCE}/blobs/uploads/{session_id}"
    assert_error(await client.get(foreign), 404, "BLOB_UPLOAD_UNKNOWN")
    assert_error(await client.patch(foreign, content=b"x"), 404, "BLOB_UPLOAD_UNKNOWN")
    assert_error(await client.delete(foreign), 404, "BLOB_UPLOAD_UNKNOWN")
    assert (await client.get(session)).status_code == 204


async def test_blob_is_linked_only_in_the_uploading_repository(client):
    data = b"linked here only"
    r = await client.put(session_of(await start(client)), params={"digest": sha256(data)}, content=data)
    assert r.status_code == 201
    assert_error(await client.get(f"/v2/{SOURCE}/blobs/{sha256(data)}"), 404, "BLOB_UNKNOWN")


async def test_monolithic_post_with_wrong_content_length_is_rejected(client):
    data = b"0123456789"
    r = await client.post(
        f"/v2/{REPO}/blobs/uploads/",
        params={"digest": sha256(data)},
        content=data[:5],
        headers={"Content-Length": "10"},
    )
    assert_error(r, 400)
    assert_error(await client.head(f"/v2/{REPO}/blobs/{sha256(data)}"), 404)


async def test_closing_put_with_misplaced_content_range_is_416(client):
    data = os.urandom(100)
    r = await client.patch(session_of(await start(client)), content=data[:50], headers={"Content-Range": "0-49"})
    session = session_of(r)
    r = await client.put(
        session, params={"digest": sha256(data)}, content=data[60:], headers={"Content-Range": "60-99"}
    )
    assert_error(r, 416)
    r = await client.get(session)
    assert r.status_code == 204
    assert_session_headers(r, 50)
    r = await client.put(
        session, params={"digest": sha256(data)}, content=data[50:], headers={"Content-Range": "50-99"}
    )
    assert r.status_code == 201, r.text


async def test_session_id_with_trailing_newline_is_unknown(client):
    session = session_of(await start(client))
    assert_error(await client.get(session + "%0A"), 404, "BLOB_UPLOAD_UNKNOWN")
    assert (await client.get(session)).status_code == 204
