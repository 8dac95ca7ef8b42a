"""Errors: the OCI envelope on every error (unknown routes and wrong methods included), the API
version header on every response, invalid names, tags and digests, and no 500 for bad input."""

from __future__ import annotations

import json

import httpx
import pytest

from tests.protocol.conformance_data import CONFORMANCE_ERROR_CODES
from tests.support.digests import sha256
from tests.support.http import API_VERSION_HEADER, assert_error, push_blob, push_image, put_manifest, relative
from tests.support.media_types import OCI_MANIFEST

REPO = "errors/repo"
DIGEST = sha256(b"nothing here")


# -- base endpoint and the version header ---------------------------------------------------------


async def test_base_endpoint(client):
    r = await client.get("/v2/")
    assert r.status_code == 200
    assert r.json() == {}
    assert r.headers["Content-Type"].split(";")[0] == "application/json"
    assert r.headers[API_VERSION_HEADER] == "registry/2.0"
    r = await client.head("/v2/")
    assert r.status_code == 200
    assert r.headers[API_VERSION_HEADER] == "registry/2.0"


async def test_api_version_header_on_success_and_error_responses(client):
    digest, _ = await push_image(client, REPO, "v1")
    blob = await push_blob(client, REPO, b"some blob")
    started = await client.post(f"/v2/{REPO}/blobs/uploads/")
    responses = [
        started,
        await client.get(f"/v2/{REPO}/manifests/v1"),
        await client.head(f"/v2/{REPO}/manifests/{digest}"),
        await client.get(f"/v2/{REPO}/blobs/{blob}"),
        await client.get(f"/v2/{REPO}/blobs/{blob}", headers={"Range": "bytes=0-1"}),
        await client.get(f"/v2/{REPO}/tags/list"),
        await client.get("/v2/_catalog"),
        await client.get(f"/v2/{REPO}/referrers/{digest}"),
        await client.get(relative(started.headers["Location"])),
        # errors
        await client.get(f"/v2/{REPO}/blobs/{DIGEST}"),
        await client.head(f"/v2/{REPO}/blobs/{DIGEST}"),
        await client.get(f"/v2/{REPO}/manifests/nope"),
        await client.get("/v2/BAD/tags/list"),
        await client.get("/v3/"),
        await client.post("/v2/"),
        await client.get(f"/v2/{REPO}/blobs/{blob}", headers={"Range": "bytes=1000-2000"}),
        await client.get(f"/v2/{REPO}/tags/list", params={"n": "x"}),
    ]
    for r in responses:
        assert r.headers.get(API_VERSION_HEADER) == "registry/2.0", (r.request.method, r.request.url, r.status_code)


# -- unknown routes and wrong methods -------------------------------------------------------------


UNKNOWN_ROUTES = [
    "/",
    "/v1/",
    "/v3/",
    "/v2/foo",
    "/v2/foo/bar/baz",
    "/v2/foo/manifests",
    "/v2/foo/tags",
    "/v2/foo/tags/list/extra",
    "/v2/foo/blobs",
    "/nope/v2/",
]


async def test_unknown_route_is_404_envelope(client):
    for path in UNKNOWN_ROUTES:
        for method in ("GET", "POST", "DELETE"):
            assert_error(await client.request(method, path), 404)


WRONG_METHODS = [
    ("POST", "/v2/"),
    ("DELETE", "/v2/"),
    ("PUT", f"/v2/{REPO}/blobs/{DIGEST}"),
    ("POST", f"/v2/{REPO}/blobs/{DIGEST}"),
    ("PATCH", f"/v2/{REPO}/manifests/latest"),
    ("POST", f"/v2/{REPO}/manifests/latest"),
    ("DELETE", f"/v2/{REPO}/tags/list"),
    ("PUT", f"/v2/{REPO}/tags/list"),
    ("POST", "/v2/_catalog"),
    ("DELETE", f"/v2/{REPO}/referrers/{DIGEST}"),
    ("GET", f"/v2/{REPO}/blobs/uploads/"),
    ("PUT", f"/v2/{REPO}/blobs/uploads/"),
]


async def test_wrong_method_is_405_envelope(client):
    for method, path in WRONG_METHODS:
        r = await client.request(method, path)
        assert_error(r, 405, "UNSUPPORTED")
        assert r.headers.get("Allow"), (method, path, r.headers)


async def test_head_error_has_no_body(client):
    r = await client.head(f"/v2/{REPO}/manifests/missing")
    assert_error(r, 404)
    r = await client.head(f"/v2/{REPO}/blobs/{DIGEST}")
    assert_error(r, 404)


# -- invalid names, tags and digests --------------------------------------------------------------

INVALID_NAMES = [
    "Upper/case",
    "upper/Case",
    "a/%2E%2E/b",  # a/../b once decoded
    "%2E%2E/b",
    "a..b",
    "a/%2E/b",
    "-leading",
    "trailing-",
    "a__-b",
    "a//b",
    "a%20b",
    "a%00b",
    "x" * 256,
    "/".join(["abcdefghij"] * 24),  # 263 characters
]


NAME_CHECKED_ENDPOINTS = [
    ("GET", "/tags/list"),
    ("GET", "/manifests/latest"),
    ("HEAD", "/manifests/latest"),
    ("PUT", "/manifests/latest"),
    ("DELETE", "/manifests/latest"),
    ("GET", f"/blobs/{DIGEST}"),
    ("HEAD", f"/blobs/{DIGEST}"),
    ("DELETE", f"/blobs/{DIGEST}"),
    ("POST", "/blobs/uploads/"),
    ("GET", "/blobs/uploads/0b8ca1f3-6e44-4c57-9d5b-2f1a4a1b7d90"),
    ("GET", f"/referrers/{DIGEST}"),
]


async def test_invalid_repository_name_is_400_name_invalid(client):
    for name in INVALID_NAMES:
        for method, suffix in NAME_CHECKED_ENDPOINTS:
            r = await client.request(method, f"/v2/{name}{suffix}")
            assert_error(r, 400, None if method == "HEAD" else "NAME_INVALID")


async def test_name_of_255_characters_is_valid(client):
    name = "/".join(["a" * 127, "b" * 127])
    assert len(name) == 255
    assert_error(await client.get(f"/v2/{name}/tags/list"), 404, "NAME_UNKNOWN")
    digest = await push_blob(client, name, b"long name blob")
    r = await client.get(f"/v2/{name}/blobs/{digest}")
    assert r.status_code == 200


async def test_invalid_tag_on_put_is_400(client):
    await push_blob(client, REPO, b"{}")
    body = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": sha256(b"{}"), "size": 2},
            "layers": [],
        }
    ).encode()
    for tag in ("-bad", ".bad", "bad!tag", "t" * 129, "bad tag", "bad%00", "bad:"):
        r = await put_manifest(client, REPO, tag, body)
        error = assert_error(r, 400)
        assert error["code"] in CONFORMANCE_ERROR_CODES, error
    assert (await client.get(f"/v2/{REPO}/tags/list")).json()["tags"] == []


async def test_tag_of_128_characters_is_valid(client):
    tag = "T" * 128
    digest, _ = await push_image(client, REPO, tag)
    r = await client.get(f"/v2/{REPO}/manifests/{tag}")
    assert r.status_code == 200
    assert r.headers["Docker-Content-Digest"] == digest


INVALID_DIGESTS = [
    "sha256:abc",
    "sha256:" + "A" * 64,
    "sha256:" + "g" * 64,
    "sha256:" + "a" * 65,
    "sha512:" + "a" * 64,
    "sha256:",
    ":" + "a" * 64,
    "SHA256:" + "a" * 64,
    "notadigest",
]


async def test_invalid_blob_digest_is_400_digest_invalid(client):
    await push_blob(client, REPO, b"x")
    for digest in INVALID_DIGESTS:
        for method in ("GET", "DELETE"):
            assert_error(await client.request(method, f"/v2/{REPO}/blobs/{digest}"), 400, "DIGEST_INVALID")
        assert_error(await client.head(f"/v2/{REPO}/blobs/{digest}"), 400)


async def test_unsupported_digest_algorithm_is_rejected(client):
    r = await client.get(f"/v2/{REPO}/blobs/md5:" + "a" * 32)
    assert r.status_code in (400, 404)
    assert_error(r, r.status_code)
    r = await client.post(f"/v2/{REPO}/blobs/uploads/", params={"digest": "md5:" + "a" * 32}, content=b"x")
    assert_error(r, 400, "DIGEST_INVALID")


# -- no 500 for bad input -------------------------------------------------------------------------


def assert_client_error_or_success(r) -> None:
    assert r.status_code < 500, (r.request.method, r.request.url, r.status_code, r.text)
    assert r.headers.get(API_VERSION_HEADER) == "registry/2.0"
    if r.status_code >= 400:
        assert_error(r, r.status_code)


MALFORMED_REQUESTS = [
    ("GET", "/v2/%00/tags/list"),
    ("GET", "/v2/foo/blobs/uploads/..%2F..%2Fetc%2Fpasswd"),
    ("GET", "/v2/foo/blobs/uploads/%ZZ"),
    ("GET", "/v2/foo/blobs/uploads/" + "a" * 300),
    ("DELETE", "/v2/foo/blobs/uploads/not-a-session"),
    ("GET", "/v2/foo/manifests/sha256:"),
    ("GET", "/v2/foo/manifests/:latest"),
    ("GET", "/v2/foo/manifests/" + "a" * 2000),
    ("GET", "/v2/foo/blobs/sha256:" + "a" * 5000),
    ("GET", "/v2/foo/referrers/sha256:"),
    ("GET", "/v2/foo/referrers/%FF%FE"),
    ("GET", "/v2/foo/tags/list?n=99999999999999999999999999"),
    ("GET", "/v2/foo/tags/list?n=1e3"),
    ("GET", "/v2/foo/tags/list?n=&last="),
    ("GET", "/v2/_catalog?n=-5"),
    ("GET", "/v2/_catalog?last=" + "%FF" * 10),
    ("GET", "/v2/foo/referrers/" + DIGEST + "?artifactType=" + "a" * 5000),
    ("POST", "/v2/foo/blobs/uploads/?mount=garbage&from=Bad..Name"),
    ("POST", "/v2/foo/blobs/uploads/?digest=garbage"),
    ("PUT", "/v2/foo/blobs/uploads/not-a-session?digest=" + DIGEST),
    ("PATCH", "/v2/foo/blobs/uploads/%2E%2E"),
    ("GET", "/v2/foo/blobs/uploads/%2E%2E"),
]


async def test_malformed_paths_never_500(client):
    for method, path in MALFORMED_REQUESTS:
        assert_client_error_or_success(await client.request(method, path))


async def _session(client) -> str:
    r = await client.post(f"/v2/{REPO}/blobs/uploads/")
    assert r.status_code == 202
    return relative(r.headers["Location"])


async def test_patch_with_garbage_content_range_is_416(client):
    session = await _session(client)
    for value in ("garbage", "bytes */10", "5-2", "-1-3", "0-", "a-b", "0-1-2", "bytes=zz"):
        r = await client.patch(session, content=b"abc", headers={"Content-Range": value})
        assert_error(r, 416)
        # The session survives and is still empty.
        r = await client.get(session)
        assert r.status_code == 204, value
        assert r.headers["Range"] == "0-0", value


async def test_garbage_content_length_is_400(client):
    session = await _session(client)
    for value in ("-1", "abc", "1.5", "0x10"):
        headers = {"Content-Length": value}
        assert_error(await client.patch(session, content=b"abc", headers=headers), 400)
        assert_error(await client.put(session, params={"digest": sha256(b"abc")}, content=b"abc", headers=headers), 400)
        assert_error(
            await client.post(
                f"/v2/{REPO}/blobs/uploads/", params={"digest": sha256(b"abc")}, content=b"abc", headers=headers
            ),
            400,
        )
        assert_error(
            await client.put(
                f"/v2/{REPO}/manifests/latest", content=b"{}", headers={**headers, "Content-Type": OCI_MANIFEST}
            ),
            400,
        )


async def test_content_length_not_matching_body_is_rejected(client):
    session = await _session(client)
    r = await client.patch(session, content=b"abcde", headers={"Content-Length": "10"})
    assert_error(r, 400, "SIZE_INVALID")
    r = await client.patch(session, content=b"abcde", headers={"Content-Length": "5", "Content-Range": "0-9"})
    assert_client_error_or_success(r)
    assert r.status_code in (400, 416)
    # Nothing was recorded (the session may survive the 4xx, or be closed by it).
    r = await client.get(session)
    assert r.status_code in (204, 404)
    if r.status_code == 204:
        assert r.headers["Range"] == "0-0"


async def test_garbage_range_on_blob_get_never_500(client):
    data = b"0123456789"
    digest = await push_blob(client, REPO, data)
    for value in ("bytes=zz", "bytes=", "bytes=-", "items=0-5", "bytes=0-1,3-4", "garbage", "bytes=5-2", "bytes=a-"):
        r = await client.get(f"/v2/{REPO}/blobs/{digest}", headers={"Range": value})
        assert_client_error_or_success(r)
        assert r.status_code in (200, 206, 416), value
        if r.status_code == 200:
            assert r.content == data


async def test_deeply_nested_manifest_json_is_400(client):
    body = b"[" * 100_000 + b"]" * 100_000
    assert_error(await put_manifest(client, REPO, "deep", body), 400, "MANIFEST_INVALID")
    body = b'{"a":' * 50_000 + b"1" + b"}" * 50_000
    assert_error(await put_manifest(client, REPO, "deep", body), 400, "MANIFEST_INVALID")


MALFORMED_MANIFESTS = [
    b"",
    b"null",
    b"[]",
    b'"string"',
    b"\xff\xfe\x00garbage",
    b'{"schemaVersion": "2"}',
    b'{"schemaVersion": 2, "mediaType": 5}',
    b'{"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json", "config": "x"}',
    b'{"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json", "config": {}, "layers": []}',
    b'{"schemaVersion": 2, "config": {"mediaType": "a/b", "digest": "sha256:zz", "size": 1}, "layers": []}',
    b'{"schemaVersion": 2, "config": {"mediaType": "a/b", "digest": "%s", "size": -1}, "layers": []}',
    b'{"schemaVersion": 2, "config": {"mediaType": "a/b", "digest": "%s", "size": 1e400}, "layers": []}',
    b'{"schemaVersion": 2, "config": {"mediaType": "a/b", "digest": "%s", "size": 2}, "layers": {}}',
    b'{"schemaVersion": 2, "config": {"mediaType": "a/b", "digest": "%s", "size": 2}, "layers": [], '
    b'"annotations": {"k": 1}}',
    b'{"schemaVersion": 2, "config": {"mediaType": "a/b", "digest": "%s", "size": 2}, "layers": [], '
    b'"subject": {"mediaType": "a/b", "digest": "bad", "size": 1}}',
    b'{"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": "x"}',
    b'{"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": [1]}',
]


async def test_malformed_manifests_are_400_manifest_invalid(client):
    await push_blob(client, REPO, b"{}")
    for template in MALFORMED_MANIFESTS:
        doc = template.replace(b"%s", sha256(b"{}").encode())
        headers = {}
        try:
            media_type = json.loads(doc).get("mediaType") if doc.startswith(b"{") else None
        except ValueError:
            media_type = None
        if isinstance(media_type, str):
            headers["Content-Type"] = media_type
        r = await client.put(f"/v2/{REPO}/manifests/bad", content=doc, headers=headers)
        assert_error(r, 400, "MANIFEST_INVALID")
    assert_error(await client.get(f"/v2/{REPO}/manifests/bad"), 404, "MANIFEST_UNKNOWN")


async def test_overlong_media_types_in_manifest_never_500(client):
    """RFC 6838 caps a media type at 255 characters; longer ones are bad input, never a server error."""
    empty = await push_blob(client, REPO, b"{}")
    long_type = "application/vnd." + "x" * 300
    for doc in (
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "artifactType": long_type,
            "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": empty, "size": 2},
            "layers": [],
        },
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": long_type, "digest": empty, "size": 2},
            "layers": [],
        },
    ):
        r = await put_manifest(client, REPO, "long", json.dumps(doc).encode())
        assert_client_error_or_success(r)


async def test_garbage_content_type_on_manifest_put_never_500(client):
    _, body = await push_image(client, REPO, "v1")
    for content_type in (
        "garbage",
        ";;;",
        "application/json; charset=",
        "a" * 2000,
        "application/vnd.oci.image.index.v1+json",
    ):
        r = await client.put(f"/v2/{REPO}/manifests/v2", content=body, headers={"Content-Type": content_type})
        assert_client_error_or_success(r)


async def test_storage_outage_is_503_unavailable(client, registry_model, monkeypatch):
    """A storage backend that stays down answers 503 UNAVAILABLE with Retry-After, never 500."""
    from storage.base import StorageUnavailable

    async def down(*args, **kwargs):
        raise StorageUnavailable("connection refused by the object store")

    monkeypatch.setattr(registry_model.storage._inner, "start_upload", down)
    r = await client.post("/v2/team/outage/blobs/uploads/")
    assert r.status_code == 503
    assert r.json()["errors"][0]["code"] == "UNAVAILABLE"
    assert r.headers["Retry-After"] == "5"


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
async def test_storage_errors_never_show_where_storage_is(make_app):
    """An unreachable S3 endpoint: clients get 503 UNAVAILABLE and nothing of the endpoint,
    the bucket or the keys (they are in the log); /healthz, which anyone may call, too."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed_port = s.getsockname()[1]  # nothing listens once the socket is closed
    bucket = "secret-bucket-name"
    app = await make_app(
        storage={
            "driver": "s3",
            "s3": {
                "bucket": bucket,
                "endpoint_url": f"http://127.0.0.1:{closed_port}",
                "access_key": "AKIA-EXAMPLE",
                "secret_key": "not-a-real-secret",
                "root_prefix": "private-prefix/",
                "redirect": False,
            },
        }
    )
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://registry") as client:
        data = b"x" * 1000
        responses = [
            await client.post(f"/v2/{REPO}/blobs/uploads/", params={"digest": sha256(data)}, content=data),
            await client.get("/healthz"),
        ]
        r = await client.post(f"/v2/{REPO}/blobs/uploads/")  # a session; its data is what fails
        assert r.status_code == 202, r.text
        responses.append(await client.patch(relative(r.headers["Location"]), content=data))
    for r in responses:
        assert r.status_code == 503, (r.request.url, r.text)
        text = (r.text + json.dumps(dict(r.headers))).lower()
        for secret in (str(closed_port), bucket, "private-prefix", "uploads/", "akia-example", "127.0.0.1"):
            assert secret not in text, (secret, r.request.url, r.text)


@pytest.mark.parametrize("backend", ["postgres"], indirect=True)
async def test_database_errors_never_show_the_database(make_app, pg_database):
    """The metadata database refusing connections: 503 UNAVAILABLE with Retry-After, and
    nothing of the server, database name or driver message."""
    import asyncpg

    from tests.support.postgres import PG_ADMIN_URL

    app = await make_app()
    name = pg_database.rsplit("/", 1)[1]
    admin = await asyncpg.connect(PG_ADMIN_URL)
    try:
        await admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
        await admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1", name)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://registry") as client:
            responses = [await client.get(f"/v2/{REPO}/tags/list"), await client.get("/healthz")]
    finally:
        await admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
        await admin.close()
    for r in responses:
        assert r.status_code == 503, r.text
        text = r.text.lower()
        for secret in (name, "5432", "127.0.0.1", "postgres", "asyncpg", "connection"):
            assert secret not in text, (secret, r.request.url, r.text)
    assert responses[0].headers["Retry-After"] == "5"
