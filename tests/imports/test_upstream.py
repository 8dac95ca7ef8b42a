"""registry.imports.upstream against real registries on loopback: CNCF distribution (the Debian
docker-registry binary: anonymous, htpasswd, TLS) and an auth-enabled `okura serve` (the Docker token
protocol), plus tiny raw-asyncio stubs for what no honest registry does (tampered bytes, stalls, schema 1,
endless manifests, redirects to other hosts, realms on other hosts).

Plain-HTTP registries are reached with insecure=True, as OpenShift imports from them: the client tries
TLS first and falls back to HTTP. The distribution instances and okura start once per module."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from registry.config import AllowedRegistry
from registry.imports import upstream as upstream_module
from registry.imports.guard import HostGuard
from registry.imports.keyring import Credential
from registry.imports.upstream import (
    BLOB_CHUNK,
    DigestMismatch,
    ImageRef,
    ManifestTooLarge,
    SchemaOneRefused,
    Upstream,
    UpstreamError,
    UpstreamNotFound,
    UpstreamRefused,
    UpstreamUnauthorized,
    UpstreamUnavailable,
)
from registry.model import manifest_format
from tests.support.digests import sha256
from tests.support.http import descriptor
from tests.support.media_types import OCI_CONFIG, OCI_INDEX, OCI_MANIFEST
from tests.support.upstreams import (
    PASSWORD,
    USER,
    Seen,
    reply,
    send,
    token_requests,
)

TIMEOUT = 5.0  # connect and read timeouts of the clients under test (the stall test uses less)


Guard = Callable[[str], Awaitable[str | None]]


async def allow_all(host: str) -> str | None:
    return None


def refusing(*hosts: str) -> Guard:
    """An allow_host guard refusing exactly these host[:port]s."""

    async def allow(host: str) -> str | None:
        return f"{host} is refused by this test" if host in hosts else None

    return allow


def upstream(host: str, *credentials: Credential, allow: Guard = allow_all, **kw: Any) -> Upstream:
    kw.setdefault("connect_timeout", TIMEOUT)
    kw.setdefault("read_timeout", TIMEOUT)
    return Upstream(host, list(credentials), allow_host=allow, **kw)


def oci_manifest() -> bytes:
    config = b"{}"
    return json.dumps(
        {"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": descriptor(OCI_CONFIG, config), "layers": []}
    ).encode()


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


# --- image references ---------------------------------------------------------------------------------


DIGEST = "sha256:" + "ab" * 32


@pytest.mark.parametrize(
    ("text", "registry", "repository", "tag", "digest"),
    [
        ("busybox", "docker.io", "library/busybox", "latest", None),
        ("busybox:1.36", "docker.io", "library/busybox", "1.36", None),
        ("docker.io/busybox", "docker.io", "library/busybox", "latest", None),
        ("index.docker.io/org/app:v1", "docker.io", "org/app", "v1", None),
        ("org/app", "docker.io", "org/app", "latest", None),
        ("quay.io/coreos/etcd:v3.5", "quay.io", "coreos/etcd", "v3.5", None),
        (f"localhost:5000/a/b/c@{DIGEST}", "localhost:5000", "a/b/c", None, DIGEST),
        (f"registry.example.com/app:v2@{DIGEST}", "registry.example.com", "app", "v2", DIGEST),
        ("localhost/app", "localhost", "app", "latest", None),
        ("[::1]:5000/app:x", "[::1]:5000", "app", "x", None),
        ("Example.COM:443/app", "example.com:443", "app", "latest", None),
    ],
)
def test_image_ref_parse(text, registry, repository, tag, digest):
    ref = ImageRef.parse(text)
    assert (ref.registry, ref.repository, ref.tag, ref.digest) == (registry, repository, tag, digest)
    assert ref.reference == (digest or tag)
    assert ImageRef.parse(str(ref)) == ref


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "image reference is empty"),
        ("Busybox", "repository path 'Busybox' must be lowercase"),
        ("quay.io/Org/app", "repository path 'Org/app' must be lowercase"),
        ("quay.io/", "names no repository"),
        ("app:", "tag '' must match"),
        ("app:-bad", "tag '-bad' must match"),
        ("quay.io/app@sha256:abc", "digest 'sha256:abc': sha256 digest must be 64 lowercase hex characters"),
        ("quay.io/app@md5:" + "a" * 32, "unsupported digest algorithm 'md5'"),
        ("quay.io:0/app", "port 0 is out of range"),
        ("-bad.io/app", "'-bad.io' is not a valid host[:port]"),
        ("quay.io/a//b", "must be components of [a-z0-9]"),
        ("app name", "contains whitespace"),
    ],
)
def test_image_ref_invalid(text, message):
    with pytest.raises(ValueError) as info:
        ImageRef.parse(text)
    assert message in str(info.value)


# --- distribution: anonymous, plain HTTP --------------------------------------------------------------


async def test_anonymous_pull_by_tag_and_by_digest(distribution):
    pushed = distribution.images["app"]
    async with upstream(distribution.host, insecure=True) as up:
        by_tag = await up.manifest(ImageRef.parse(f"{distribution.host}/test/app:v1"))
        by_digest = await up.manifest(ImageRef.parse(f"{distribution.host}/test/app@{pushed.digest}"))
    for fetched in (by_tag, by_digest):
        assert (fetched.content, fetched.media_type, fetched.digest) == (pushed.content, OCI_MANIFEST, pushed.digest)


async def test_index_with_two_platform_manifests(distribution):
    index, children = distribution.images["multi"]
    async with upstream(distribution.host, insecure=True) as up:
        fetched = await up.manifest(ImageRef.parse(f"{distribution.host}/test/multi"))
        assert (fetched.media_type, fetched.digest, fetched.content) == (OCI_INDEX, index.digest, index.content)
        listed = [m["digest"] for m in json.loads(fetched.content)["manifests"]]
        assert listed == [child.digest for child in children]
        for child in children:
            got = await up.manifest(ImageRef.parse(f"{distribution.host}/test/multi@{child.digest}"))
            assert (got.media_type, got.content) == (OCI_MANIFEST, child.content)


async def test_blob_streams_in_chunks_and_is_verified(distribution):
    layer = distribution.images["app"].layers[0]
    sizes: list[int] = []
    received = bytearray()
    async with upstream(distribution.host, insecure=True) as up, up.blob("test/app", sha256(layer)) as stream:
        assert stream.size == len(layer)
        async for chunk in stream:
            sizes.append(len(chunk))
            received += chunk
        assert stream.verified
    assert bytes(received) == layer
    assert len(sizes) > 1 and max(sizes) <= BLOB_CHUNK


async def test_missing_tag_and_blob_are_not_found(distribution):
    async with upstream(distribution.host, insecure=True) as up:
        with pytest.raises(UpstreamNotFound) as info:
            await up.manifest(ImageRef.parse(f"{distribution.host}/test/app:missing"))
        assert f"{distribution.host}/test/app:missing" in str(info.value)
        assert "MANIFEST_UNKNOWN" in str(info.value)  # the registry's own word, quoted
        missing = sha256(b"not there")
        with pytest.raises(UpstreamNotFound, match=f"{distribution.host}/test/app@{missing}"):
            async with up.blob("test/app", missing):
                pass


async def test_manifest_larger_than_the_limit(distribution):
    async with upstream(distribution.host, insecure=True, max_manifest_bytes=100) as up:
        with pytest.raises(ManifestTooLarge, match=f"{distribution.host}/test/app:v1: .*limit of 100 bytes"):
            await up.manifest(ImageRef.parse(f"{distribution.host}/test/app:v1"))


async def test_plain_http_only_when_insecure(distribution):
    ref = ImageRef.parse(f"{distribution.host}/test/app:v1")
    async with upstream(distribution.host) as up:
        with pytest.raises(UpstreamUnavailable, match=f"{distribution.host}/test/app:v1: cannot connect to"):
            await up.manifest(ref)
    async with upstream(distribution.host, insecure=True) as up:
        assert (await up.manifest(ref)).digest == distribution.images["app"].digest


# --- distribution: htpasswd (Basic) -------------------------------------------------------------------


async def test_basic_auth_with_the_right_credentials(htpasswd_distribution):
    registry, pushed = htpasswd_distribution, htpasswd_distribution.images["app"]
    async with upstream(registry.host, Credential(USER, PASSWORD), insecure=True) as up:
        fetched = await up.manifest(ImageRef.parse(f"{registry.host}/private/app:v1"))
        assert fetched.digest == pushed.digest
        async with up.blob("private/app", sha256(pushed.layers[0])) as stream:
            assert b"".join([chunk async for chunk in stream]) == pushed.layers[0]
        assert await up.tags("private/app", 10) == ["v1"]


async def test_basic_auth_with_wrong_credentials_then_anonymously(htpasswd_distribution):
    registry = htpasswd_distribution
    async with upstream(registry.host, Credential(USER, "wrong-password"), insecure=True) as up:
        with pytest.raises(UpstreamUnauthorized) as info:
            await up.manifest(ImageRef.parse(f"{registry.host}/private/app:v1"))
    message = str(info.value)
    assert message.startswith(f"{registry.host}/private/app:v1: credentials were refused, and anonymous access too")
    assert "wrong-password" not in message and "\n" not in message
    async with upstream(registry.host, insecure=True) as up:
        with pytest.raises(UpstreamUnauthorized, match=r"anonymous access was refused .*a pull secret .* is needed"):
            await up.manifest(ImageRef.parse(f"{registry.host}/private/app:v1"))


async def test_refused_credentials_are_retried_anonymously(stubs):
    """OpenShift's retry for public images behind a wrong pull secret: the request once with the credential,
    once without, which succeeds; later requests stay anonymous."""
    stub = await stubs()
    body = oci_manifest()
    stub.routes["/v2/"] = reply(401, headers={"WWW-Authenticate": 'Basic realm="stub"'})

    async def manifest(seen: Seen, writer: asyncio.StreamWriter) -> None:
        if "authorization" in seen.headers:
            await send(writer, 401, headers={"WWW-Authenticate": 'Basic realm="stub"'})
        else:
            await send(writer, 200, body, {"Content-Type": OCI_MANIFEST})

    stub.routes["/v2/pub/app/manifests/v1"] = manifest
    async with upstream(stub.host, Credential("bob", "stale"), insecure=True) as up:
        for _ in range(2):
            assert (await up.manifest(ImageRef.parse(f"{stub.host}/pub/app:v1"))).content == body
    sent = [s.headers.get("authorization") for s in stub.requests("/v2/pub/app/manifests/v1")]
    assert sent == [basic("bob", "stale"), None, None]


# --- distribution behind TLS --------------------------------------------------------------------------


async def test_tls_verified_with_the_ca_bundle(tls_distribution, ca):
    ref = ImageRef.parse(f"{tls_distribution.host}/tls/app:v1")
    async with upstream(tls_distribution.host, ca_bundle=str(ca.path)) as up:
        assert (await up.manifest(ref)).digest == tls_distribution.images["app"].digest


async def test_tls_refused_without_the_ca_bundle(tls_distribution):
    ref = ImageRef.parse(f"{tls_distribution.host}/tls/app:v1")
    async with upstream(tls_distribution.host) as up:
        with pytest.raises(
            UpstreamUnavailable, match=f"{tls_distribution.host}/tls/app:v1: .*CERTIFICATE_VERIFY_FAILED"
        ):
            await up.manifest(ref)


async def test_tls_accepted_when_insecure(tls_distribution):
    ref = ImageRef.parse(f"{tls_distribution.host}/tls/app:v1")
    async with upstream(tls_distribution.host, insecure=True) as up:
        assert (await up.manifest(ref)).digest == tls_distribution.images["app"].digest


# --- okura: the Docker token protocol -----------------------------------------------------------------


async def test_bearer_token_protocol(okura):
    registry, pushed = okura.registry, okura.private
    mark = registry.mark()
    async with upstream(okura.host, okura.admin, insecure=True) as up:
        fetched = await up.manifest(ImageRef.parse(f"{okura.host}/private/app:v1"))
        assert (fetched.digest, fetched.content) == (pushed.digest, pushed.content)
        async with up.blob("private/app", sha256(pushed.layers[0])) as stream:
            assert b"".join([chunk async for chunk in stream]) == pushed.layers[0]
        again = await up.manifest(ImageRef.parse(f"{okura.host}/private/app@{pushed.digest}"))
        assert again.content == pushed.content
    fetches = token_requests(registry, mark)
    assert len(fetches) == 1, fetches  # one token per repository, kept for the client's life


async def test_bearer_with_wrong_credentials_on_a_private_repository(okura):
    async with upstream(okura.host, Credential("e2e", "not-a-token"), insecure=True) as up:
        with pytest.raises(UpstreamUnauthorized) as info:
            await up.manifest(ImageRef.parse(f"{okura.host}/private/app:v1"))
    message = str(info.value)
    assert message.startswith(f"{okura.host}/private/app:v1: credentials were refused, and anonymous access too")
    assert "not-a-token" not in message and okura.admin.password not in message


async def test_bearer_with_wrong_credentials_on_a_public_repository(okura):
    mark = okura.registry.mark()
    async with upstream(okura.host, Credential("e2e", "not-a-token"), insecure=True) as up:
        fetched = await up.manifest(ImageRef.parse(f"{okura.host}/public/app:v1"))
    assert fetched.content == okura.public.content
    statuses = [e["status"] for e in token_requests(okura.registry, mark)]
    assert statuses == ["401", "200"]  # the credential refused, then an anonymous token


async def test_anonymous_bearer_on_private_and_public_repositories(okura):
    async with upstream(okura.host, insecure=True) as up:
        assert (await up.manifest(ImageRef.parse(f"{okura.host}/public/app:v1"))).content == okura.public.content
        with pytest.raises(UpstreamUnauthorized, match=f"{okura.host}/private/app:v1: anonymous access was refused"):
            await up.manifest(ImageRef.parse(f"{okura.host}/private/app:v1"))


async def test_tags_follow_link_pagination(okura):
    mark = okura.registry.mark()
    async with upstream(okura.host, okura.admin, insecure=True) as up:
        assert await up.tags("private/many", 100, page_size=2) == okura.tags
        assert await up.tags("private/many", 3, page_size=2) == okura.tags[:3]
        assert await up.tags("private/many", 0) == []
        with pytest.raises(UpstreamNotFound, match=f"{okura.host}/private/nothing: repository not found"):
            await up.tags("private/nothing", 10)
    pages = [e for e in okura.registry.access(mark) if e["path"].startswith("/v2/private/many/tags/list")]
    assert len(pages) == 3 + 2, [e["path"] for e in pages]


# --- stubs: what honest registries do not do ----------------------------------------------------------


async def test_tampered_blob_fails_at_the_end(stubs):
    stub = await stubs()
    expected = os.urandom(200_000)
    digest = sha256(expected)
    stub.routes[f"/v2/x/app/blobs/{digest}"] = reply(200, os.urandom(200_000))
    received = 0
    async with upstream(stub.host, insecure=True) as up, up.blob("x/app", digest) as stream:
        with pytest.raises(DigestMismatch) as info:
            async for chunk in stream:
                received += len(chunk)
        assert not stream.verified
    assert received == 200_000
    assert str(info.value).startswith(f"{stub.host}/x/app@{digest}: the 200000 bytes received hash to sha256:")


async def test_stalling_upstream_is_unavailable_within_the_read_timeout(stubs):
    stub = await stubs()

    async def stall_body(seen: Seen, writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 1048576\r\nConnection: close\r\n\r\n" + b"x" * 1000)
        await writer.drain()
        await asyncio.Event().wait()  # until the stub is closed

    async def stall_headers(seen: Seen, writer: asyncio.StreamWriter) -> None:
        await asyncio.Event().wait()

    digest = sha256(b"whatever")
    stub.routes[f"/v2/x/app/blobs/{digest}"] = stall_body
    stub.routes["/v2/x/app/manifests/v1"] = stall_headers
    async with upstream(stub.host, insecure=True, read_timeout=0.5) as up:
        started = time.monotonic()
        async with up.blob("x/app", digest) as stream:
            with pytest.raises(UpstreamUnavailable, match=rf"{stub.host}/x/app@{digest}: .*read timeout"):
                async for _chunk in stream:
                    pass
        assert time.monotonic() - started < 3
        started = time.monotonic()
        with pytest.raises(UpstreamUnavailable, match=rf"{stub.host}/x/app:v1: .*sent nothing for 0.5s"):
            await up.manifest(ImageRef.parse(f"{stub.host}/x/app:v1"))
        assert time.monotonic() - started < 3


async def test_endless_manifest_stops_at_the_limit(stubs):
    stub = await stubs()
    sent = 0

    async def endless(seen: Seen, writer: asyncio.StreamWriter) -> None:
        nonlocal sent
        writer.write(f"HTTP/1.1 200 OK\r\nContent-Type: {OCI_MANIFEST}\r\nTransfer-Encoding: chunked\r\n\r\n".encode())
        chunk = b" " * 16384
        while True:
            writer.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            await writer.drain()
            sent += len(chunk)

    stub.routes["/v2/x/app/manifests/v1"] = endless
    async with upstream(stub.host, insecure=True, max_manifest_bytes=64 * 1024) as up:
        with pytest.raises(ManifestTooLarge, match=f"{stub.host}/x/app:v1: manifest is larger than the limit"):
            await up.manifest(ImageRef.parse(f"{stub.host}/x/app:v1"))
    deadline = time.monotonic() + 5
    while stub.finished < stub.connections and time.monotonic() < deadline:
        await asyncio.sleep(0.02)
    assert stub.finished == stub.connections  # we hung up; the stub's writes failed
    assert sent < 64 * 1024 * 1024


@pytest.mark.parametrize(
    ("content_type", "body"),
    [
        ("application/vnd.docker.distribution.manifest.v1+prettyjws", {"schemaVersion": 1, "name": "x/app"}),
        ("application/json", {"schemaVersion": 1, "name": "x/app", "fsLayers": []}),
    ],
)
async def test_schema_one_is_refused(stubs, content_type, body):
    stub = await stubs()
    stub.routes["/v2/x/app/manifests/v1"] = reply(200, json.dumps(body).encode(), {"Content-Type": content_type})
    async with upstream(stub.host, insecure=True) as up:
        with pytest.raises(SchemaOneRefused, match=f"{stub.host}/x/app:v1: .*Docker schema 1 manifest"):
            await up.manifest(ImageRef.parse(f"{stub.host}/x/app:v1"))


def test_media_types_agree_with_the_model():
    """upstream.py keeps its own copy (importing registry.model would be a cycle): the two must agree."""
    assert set(upstream_module.SUPPORTED) == set(manifest_format.SUPPORTED)
    assert set(upstream_module.DOCKER_SCHEMA1) == set(manifest_format.DOCKER_SCHEMA1)
    assert (upstream_module.OCI_MANIFEST, upstream_module.OCI_INDEX) == (OCI_MANIFEST, OCI_INDEX)


@pytest.mark.parametrize(
    ("content_type", "body", "expected"),
    [
        ("application/json", {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": []}, OCI_INDEX),
        (None, {"schemaVersion": 2, "manifests": []}, OCI_INDEX),
        ("application/octet-stream", {"schemaVersion": 2, "config": {}, "layers": []}, OCI_MANIFEST),
        (OCI_MANIFEST, {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": []}, "Content-Type .* contradicts"),
        ("text/html", b"<html>captive portal</html>", "the manifest is not JSON"),
        ("application/vnd.example+json", {"schemaVersion": 2, "mediaType": "x/y"}, "unsupported manifest media type"),
    ],
)
async def test_manifest_media_type(stubs, content_type, body, expected):
    stub = await stubs()
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    stub.routes["/v2/x/app/manifests/v1"] = reply(200, content, {"Content-Type": content_type} if content_type else {})
    async with upstream(stub.host, insecure=True) as up:
        if "/" in expected:
            assert (await up.manifest(ImageRef.parse(f"{stub.host}/x/app:v1"))).media_type == expected
        else:
            with pytest.raises(UpstreamError, match=f"{stub.host}/x/app:v1: {expected}"):
                await up.manifest(ImageRef.parse(f"{stub.host}/x/app:v1"))


async def test_manifest_digests_are_checked(stubs):
    stub = await stubs()
    body, other = oci_manifest(), json.dumps({"other": True}).encode()
    stub.routes["/v2/x/app/manifests/v1"] = reply(
        200, body, {"Content-Type": OCI_MANIFEST, "Docker-Content-Digest": sha256(other)}
    )
    stub.routes[f"/v2/x/app/manifests/{sha256(other)}"] = reply(200, body, {"Content-Type": OCI_MANIFEST})
    async with upstream(stub.host, insecure=True) as up:
        with pytest.raises(DigestMismatch, match=f"not {sha256(other)} as announced"):
            await up.manifest(ImageRef.parse(f"{stub.host}/x/app:v1"))
        with pytest.raises(DigestMismatch, match="not the one asked for"):
            await up.manifest(ImageRef.parse(f"{stub.host}/x/app@{sha256(other)}"))


async def test_allow_host_refuses_before_any_connection(stubs):
    stub = await stubs()
    asked: list[str] = []

    async def allow(host: str) -> str | None:
        asked.append(host)
        return "not today"

    async with upstream(stub.host, allow=allow, insecure=True) as up:
        with pytest.raises(
            UpstreamRefused,
            match=f"^{stub.host}/x/app:v1: refused to contact registry {stub.host}: not today; nothing was sent to it$",
        ):
            await up.manifest(ImageRef.parse(f"{stub.host}/x/app:v1"))
    assert asked == [stub.host]
    assert stub.connections == 0


async def test_redirect_to_another_host_carries_no_authorization(stubs):
    """A blob redirected (as distribution does to S3) goes to the other host bare; the guard sees that host."""
    origin, storage = await stubs(), await stubs("127.0.0.2")
    data = os.urandom(100_000)
    digest = sha256(data)
    challenge = {"WWW-Authenticate": 'Basic realm="stub"'}
    origin.routes["/v2/"] = reply(401, headers=challenge)
    location = f"http://{storage.host}/bucket/blob?X-Amz-Signature=s3cr3t"

    async def redirect(seen: Seen, writer: asyncio.StreamWriter) -> None:
        if seen.headers.get("authorization") != basic(USER, PASSWORD):
            await send(writer, 401, headers=challenge)
        else:
            await send(writer, 307, headers={"Location": location})

    origin.routes[f"/v2/x/app/blobs/{digest}"] = redirect
    storage.routes["/bucket/blob"] = reply(200, data)
    async with (
        upstream(origin.host, Credential(USER, PASSWORD), insecure=True) as up,
        up.blob("x/app", digest) as stream,
    ):
        assert b"".join([chunk async for chunk in stream]) == data
    assert [s.headers.get("authorization") for s in origin.requests(f"/v2/x/app/blobs/{digest}")] == [
        basic(USER, PASSWORD)
    ]
    assert [s.headers.get("authorization") for s in storage.requests("/bucket/blob")] == [None]

    storage.connections = 0
    guard = HostGuard([AllowedRegistry(origin.host)])
    async with upstream(origin.host, Credential(USER, PASSWORD), insecure=True, allow=guard.check) as up:
        with pytest.raises(UpstreamRefused) as info:
            async with up.blob("x/app", digest):
                pass
    assert (
        f"refused to contact registry redirect target {storage.host}: "
        f"{storage.host} is not in imports.allowed_registries; nothing was sent to it"
    ) in str(info.value)
    assert "s3cr3t" not in str(info.value)
    assert storage.connections == 0


@pytest.mark.parametrize(
    "location, target, why",
    [
        ("http://169.254.169.254/latest/meta-data/iam/", "169.254.169.254", "is a link-local address"),
        ("http://[::ffff:169.254.169.254]/latest/meta-data/", "[::ffff:", "is the IPv6 form of 169.254.169.254"),
        # 169.254.169.254 as one number, which the C resolver accepts
        ("http://2852039166/latest/meta-data/", "2852039166", "means 169.254.169.254"),
        ("http://metadata.google.internal/computeMetadata/v1/", "metadata.google.internal", "is a cloud metadata name"),
    ],
)
async def test_redirect_to_cloud_metadata_is_refused_by_the_default_guard(stubs, location, target, why):
    """With no allowed_registries every registry may be reached, but not a metadata service it redirects to;
    nothing is sent there (were a connection tried, 169.254.169.254 would time out, not be refused)."""
    origin = await stubs()
    digest = sha256(b"layer")
    origin.routes[f"/v2/x/app/blobs/{digest}"] = reply(307, headers={"Location": location})
    async with upstream(origin.host, insecure=True, allow=HostGuard([]).check) as up:
        with pytest.raises(UpstreamRefused) as info:
            async with up.blob("x/app", digest):
                pass
    message = str(info.value)
    assert f"refused to contact registry redirect target {target}" in message
    assert why in message
    assert message.endswith("; nothing was sent to it")
    assert len(origin.requests(f"/v2/x/app/blobs/{digest}")) == 1


async def test_token_realm_on_another_host(stubs):
    """Credentials go to the realm (the protocol: it may be another host), which the guard must allow; a
    realm answering `access_token` (OAuth2 style) works."""
    registry, auth = await stubs(), await stubs("127.0.0.2")
    challenge = {"WWW-Authenticate": f'Bearer realm="http://{auth.host}/token",service="stub registry"'}
    registry.routes["/v2/"] = reply(401, headers=challenge)
    body = oci_manifest()

    async def manifest(seen: Seen, writer: asyncio.StreamWriter) -> None:
        if seen.headers.get("authorization") == "Bearer tok-123":
            await send(writer, 200, body, {"Content-Type": OCI_MANIFEST})
        else:
            await send(writer, 401, headers=challenge)

    registry.routes["/v2/x/app/manifests/v1"] = manifest
    auth.routes["/token"] = reply(200, json.dumps({"access_token": "tok-123", "expires_in": 300}).encode())
    ref = ImageRef.parse(f"{registry.host}/x/app:v1")
    async with upstream(registry.host, Credential(USER, PASSWORD), insecure=True) as up:
        assert (await up.manifest(ref)).content == body
    (token_request,) = auth.requests("/token")
    assert token_request.headers["authorization"] == basic(USER, PASSWORD)
    assert token_request.query == {"scope": ["repository:x/app:pull"], "service": ["stub registry"]}

    auth.connections = 0
    async with upstream(registry.host, insecure=True, allow=refusing(auth.host)) as up:
        with pytest.raises(
            UpstreamRefused, match=f"{registry.host}/x/app:v1: refused to contact token realm {auth.host}: "
        ):
            await up.manifest(ref)
    assert auth.connections == 0


async def test_server_errors_and_redirect_loops(stubs):
    stub = await stubs()
    envelope = json.dumps({"errors": [{"code": "TOOMANYREQUESTS", "message": "slow down"}]}).encode()
    stub.routes["/v2/x/app/manifests/busy"] = reply(429, envelope)
    stub.routes["/v2/x/app/manifests/broken"] = reply(500)
    stub.routes["/v2/x/app/manifests/loop"] = reply(307, headers={"Location": "/v2/x/app/manifests/loop"})
    async with upstream(stub.host, insecure=True) as up:
        with pytest.raises(UpstreamUnavailable, match=f"{stub.host}/x/app:busy: HTTP 429: TOOMANYREQUESTS: slow down"):
            await up.manifest(ImageRef.parse(f"{stub.host}/x/app:busy"))
        with pytest.raises(UpstreamUnavailable, match=f"{stub.host}/x/app:broken: HTTP 500$"):
            await up.manifest(ImageRef.parse(f"{stub.host}/x/app:broken"))
        with pytest.raises(UpstreamError, match=f"{stub.host}/x/app:loop: more than 5 redirects"):
            await up.manifest(ImageRef.parse(f"{stub.host}/x/app:loop"))
    assert len(stub.requests("/v2/x/app/manifests/loop")) == 6
    stub.routes["/v2/"] = reply(503)
    async with upstream(stub.host, insecure=True) as up:
        with pytest.raises(UpstreamUnavailable, match=f"{stub.host}/x/app:v1: GET /v2/ answered HTTP 503"):
            await up.manifest(ImageRef.parse(f"{stub.host}/x/app:v1"))
    with pytest.raises(ValueError, match="is not host"):
        upstream("https://quay.io")
