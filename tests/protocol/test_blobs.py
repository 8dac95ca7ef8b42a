"""GET/HEAD/DELETE /v2/<name>/blobs/<digest>: headers, byte ranges, per-repository visibility,
per-repository deletes and sha512 digests."""

from __future__ import annotations

import hashlib
import os

from tests.support.digests import sha256
from tests.support.http import assert_error, push_blob, relative

REPO = "blobs/repo"
OTHER = "blobs/other"
DATA = bytes(range(256)) * 4 + b"tail"  # 1028 bytes


def sha512(data: bytes) -> str:
    return "sha512:" + hashlib.sha512(data).hexdigest()


async def test_get_blob_headers_and_body(client):
    digest = await push_blob(client, REPO, DATA)
    r = await client.get(f"/v2/{REPO}/blobs/{digest}")
    assert r.status_code == 200
    assert r.content == DATA
    assert r.headers["Content-Length"] == str(len(DATA))
    assert r.headers["Docker-Content-Digest"] == digest
    assert digest in r.headers["ETag"]
    assert r.headers["ETag"].strip('"').removeprefix("W/").strip('"') == digest


async def test_head_blob_headers_without_body(client):
    digest = await push_blob(client, REPO, DATA)
    r = await client.head(f"/v2/{REPO}/blobs/{digest}")
    assert r.status_code == 200
    assert r.content == b""
    assert r.headers["Content-Length"] == str(len(DATA))
    assert r.headers["Docker-Content-Digest"] == digest
    assert digest in r.headers["ETag"]


async def test_empty_blob(client):
    digest = await push_blob(client, REPO, b"")
    assert digest == "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    r = await client.get(f"/v2/{REPO}/blobs/{digest}")
    assert r.status_code == 200
    assert r.content == b""
    assert r.headers["Content-Length"] == "0"


RANGES = [
    ("bytes=0-9", 0, 9),
    ("bytes=10-19", 10, 19),
    ("bytes=1000-", 1000, len(DATA) - 1),
    ("bytes=-4", len(DATA) - 4, len(DATA) - 1),
    ("bytes=1020-5000", 1020, len(DATA) - 1),  # end past the blob is clipped
    ("bytes=0-0", 0, 0),
    (f"bytes={len(DATA) - 1}-", len(DATA) - 1, len(DATA) - 1),
    ("bytes=-5000", 0, len(DATA) - 1),  # suffix longer than the blob is the whole blob
]


async def test_range_request_is_206(client):
    digest = await push_blob(client, REPO, DATA)
    for header, start, end in RANGES:
        r = await client.get(f"/v2/{REPO}/blobs/{digest}", headers={"Range": header})
        assert r.status_code == 206, (header, r.text)
        assert r.content == DATA[start : end + 1], header
        assert r.headers["Content-Range"] == f"bytes {start}-{end}/{len(DATA)}"
        assert r.headers["Content-Length"] == str(end - start + 1)
        assert r.headers["Docker-Content-Digest"] == digest


async def test_range_request_on_head(client):
    digest = await push_blob(client, REPO, DATA)
    r = await client.head(f"/v2/{REPO}/blobs/{digest}", headers={"Range": "bytes=0-9"})
    assert r.status_code == 206
    assert r.content == b""
    assert r.headers["Content-Range"] == f"bytes 0-9/{len(DATA)}"
    assert r.headers["Content-Length"] == "10"


async def test_unsatisfiable_range_is_416(client):
    digest = await push_blob(client, REPO, DATA)
    for header in (f"bytes={len(DATA)}-", f"bytes={len(DATA)}-{len(DATA) + 10}", "bytes=5000-6000", "bytes=-0"):
        r = await client.get(f"/v2/{REPO}/blobs/{digest}", headers={"Range": header})
        assert_error(r, 416)
        assert r.headers["Content-Range"] == f"bytes */{len(DATA)}"


async def test_blob_is_visible_only_in_repositories_that_link_it(client):
    digest = await push_blob(client, REPO, DATA)
    for method in ("GET", "HEAD"):
        assert_error(await client.request(method, f"/v2/{OTHER}/blobs/{digest}"), 404, None)
    assert_error(await client.get(f"/v2/{OTHER}/blobs/{digest}"), 404, "BLOB_UNKNOWN")
    assert_error(await client.get(f"/v2/never/created/blobs/{digest}"), 404)
    # Deleting through a repository that does not link it changes nothing.
    assert_error(await client.delete(f"/v2/{OTHER}/blobs/{digest}"), 404, "BLOB_UNKNOWN")
    assert (await client.get(f"/v2/{REPO}/blobs/{digest}")).status_code == 200


async def test_delete_blob_unlinks_from_that_repository_only(client):
    digest = await push_blob(client, REPO, DATA)
    r = await client.post(f"/v2/{OTHER}/blobs/uploads/", params={"mount": digest, "from": REPO})
    assert r.status_code == 201
    r = await client.delete(f"/v2/{REPO}/blobs/{digest}")
    assert r.status_code == 202
    assert r.content == b""
    assert_error(await client.get(f"/v2/{REPO}/blobs/{digest}"), 404, "BLOB_UNKNOWN")
    assert_error(await client.head(f"/v2/{REPO}/blobs/{digest}"), 404)
    r = await client.get(f"/v2/{OTHER}/blobs/{digest}")
    assert r.status_code == 200
    assert r.content == DATA
    # Already deleted.
    assert_error(await client.delete(f"/v2/{REPO}/blobs/{digest}"), 404, "BLOB_UNKNOWN")


async def test_same_blob_pushed_to_two_repositories_then_deleted_from_one(client):
    digest = await push_blob(client, REPO, DATA)
    assert await push_blob(client, OTHER, DATA) == digest
    assert (await client.delete(f"/v2/{OTHER}/blobs/{digest}")).status_code == 202
    assert (await client.get(f"/v2/{REPO}/blobs/{digest}")).content == DATA
    # Pushing again after the delete links it again.
    assert await push_blob(client, OTHER, DATA) == digest
    assert (await client.get(f"/v2/{OTHER}/blobs/{digest}")).content == DATA


async def test_delete_unknown_blob_is_404(client):
    await push_blob(client, REPO, b"something")
    assert_error(await client.delete(f"/v2/{REPO}/blobs/{sha256(b'absent')}"), 404, "BLOB_UNKNOWN")
    assert_error(await client.delete(f"/v2/never/created/blobs/{sha256(b'absent')}"), 404)


async def test_sha512_monolithic_upload_and_get(client):
    data = os.urandom(3000)
    digest = sha512(data)
    r = await client.post(
        f"/v2/{REPO}/blobs/uploads/",
        params={"digest": digest},
        content=data,
        headers={"Content-Type": "application/octet-stream"},
    )
    assert r.status_code == 201, r.text
    assert r.headers["Docker-Content-Digest"] == digest
    assert relative(r.headers["Location"]) == f"/v2/{REPO}/blobs/{digest}"
    r = await client.get(f"/v2/{REPO}/blobs/{digest}")
    assert r.status_code == 200
    assert r.content == data
    assert r.headers["Docker-Content-Digest"] == digest
    r = await client.head(f"/v2/{REPO}/blobs/{digest}")
    assert r.status_code == 200
    assert r.headers["Content-Length"] == str(len(data))
    r = await client.get(f"/v2/{REPO}/blobs/{digest}", headers={"Range": "bytes=10-19"})
    assert r.status_code == 206
    assert r.content == data[10:20]
    # The sha256 digest of the same bytes names nothing in this repository.
    assert_error(await client.get(f"/v2/{REPO}/blobs/{sha256(data)}"), 404, "BLOB_UNKNOWN")


async def test_sha512_chunked_upload(client):
    data = os.urandom(5000)
    digest = sha512(data)
    r = await client.post(f"/v2/{REPO}/blobs/uploads/")
    session = relative(r.headers["Location"])
    r = await client.patch(session, content=data[:2000], headers={"Content-Range": "0-1999"})
    assert r.status_code == 202
    r = await client.put(relative(r.headers["Location"]), params={"digest": digest}, content=data[2000:])
    assert r.status_code == 201, r.text
    assert r.headers["Docker-Content-Digest"] == digest
    assert (await client.get(f"/v2/{REPO}/blobs/{digest}")).content == data


async def test_sha512_digest_mismatch_is_rejected(client):
    data = b"sha512 payload"
    wrong = sha512(b"other payload")
    r = await client.post(f"/v2/{REPO}/blobs/uploads/", params={"digest": wrong}, content=data)
    assert_error(r, 400, "DIGEST_INVALID")
    assert_error(await client.head(f"/v2/{REPO}/blobs/{wrong}"), 404)
    assert_error(await client.head(f"/v2/{REPO}/blobs/{sha512(data)}"), 404)


async def test_reads_follow_blob_deletes_and_relinks(client):
    digest = await push_blob(client, REPO, DATA)
    for _ in range(2):
        assert (await client.head(f"/v2/{REPO}/blobs/{digest}")).status_code == 200
        assert (await client.get(f"/v2/{REPO}/blobs/{digest}")).content == DATA
    assert (await client.delete(f"/v2/{REPO}/blobs/{digest}")).status_code == 202
    assert_error(await client.head(f"/v2/{REPO}/blobs/{digest}"), 404)
    assert_error(await client.get(f"/v2/{REPO}/blobs/{digest}"), 404, "BLOB_UNKNOWN")
    assert_error(await client.get(f"/v2/{OTHER}/blobs/{digest}"), 404, "BLOB_UNKNOWN")
    r = await client.post(f"/v2/{OTHER}/blobs/uploads/", params={"mount": digest, "from": REPO})
    assert r.status_code == 202  # nothing left to mount from
    assert await push_blob(client, REPO, DATA) == digest
    assert (await client.get(f"/v2/{REPO}/blobs/{digest}")).content == DATA
    r = await client.post(f"/v2/{OTHER}/blobs/uploads/", params={"mount": digest, "from": REPO})
    assert r.status_code == 201
    assert (await client.get(f"/v2/{OTHER}/blobs/{digest}")).content == DATA


async def test_trailing_newline_in_name_or_digest_is_invalid(client):
    digest = await push_blob(client, REPO, DATA)
    r = await client.get(f"/v2/{REPO}%0A/blobs/{digest}")
    assert r.status_code in (400, 404)  # an invalid name, or no route for it
    assert_error(r, r.status_code, "NAME_INVALID" if r.status_code == 400 else None)
    assert_error(await client.get(f"/v2/{REPO}/blobs/{digest}%0A"), 400, "DIGEST_INVALID")
    r = await client.post(f"/v2/{REPO}/blobs/uploads/", params={"digest": sha256(b"x") + "\n"}, content=b"x")
    assert_error(r, 400, "DIGEST_INVALID")
