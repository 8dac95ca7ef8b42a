"""Pull-through faults against a real `okura serve`: an upstream that sends a blob whose bytes do
not match its digest, one that stalls mid-blob, one that is gone, and one that answers 404. The
client never gets a whole wrong body (the connection drops before Content-Length is reached, or an
OCI error naming the upstream comes back), nothing is stored, the server logs no traceback, and
the next pull, with the upstream healthy again, gets the right bytes and stores them."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Iterator

import httpx
import pytest

from tests.support.digests import sha256
from tests.support.media_types import OCI_CONFIG, OCI_LAYER, OCI_MANIFEST
from tests.support.registries import Registry, start_registry
from tests.support.upstreams import Stub, reply

API = "/apis/image.openshift.io/v1/namespaces/faults"
LAYER = 2 * 1024 * 1024


@pytest.fixture(scope="module")
def registry(tmp_path_factory) -> Iterator[Registry]:
    env = {"OKURA_IMPORTS_READ_TIMEOUT": "1s", "OKURA_IMPORTS_CONTROLLER": "false"}
    yield from start_registry(tmp_path_factory.mktemp("okura-faults"), env=env)


def serve_image(stub: Stub, layer: bytes) -> str:
    """The stub serves x/app:v1 (manifest and config); the layer's route is the test's."""
    config = json.dumps({"architecture": "amd64", "os": "linux"}).encode()
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": OCI_CONFIG, "digest": sha256(config), "size": len(config)},
            "layers": [{"mediaType": OCI_LAYER, "digest": sha256(layer), "size": len(layer)}],
        }
    ).encode()
    headers = {"Content-Type": OCI_MANIFEST, "Docker-Content-Digest": sha256(manifest)}
    stub.routes["/v2/x/app/manifests/v1"] = reply(200, manifest, headers)
    stub.routes[f"/v2/x/app/blobs/{sha256(config)}"] = reply(200, config)
    return sha256(layer)


async def import_from(client: httpx.AsyncClient, stub: Stub, stream: str) -> None:
    body = {
        "kind": "ImageStreamImport",
        "apiVersion": "image.openshift.io/v1",
        "metadata": {"name": stream},
        "spec": {
            "import": True,
            "images": [
                {
                    "from": {"kind": "DockerImage", "name": f"{stub.host}/x/app:v1"},
                    "to": {"name": "v1"},
                    "importPolicy": {"insecure": True},
                }
            ],
        },
    }
    r = await client.post(f"{API}/imagestreamimports", json=body)
    assert r.status_code == 201, r.text
    assert r.json()["status"]["images"][0]["status"]["status"] == "Success", r.json()["status"]


async def pull_cut_short(client: httpx.AsyncClient, path: str, size: int) -> int:
    """GET a blob that must not arrive whole: the connection drops before Content-Length."""
    received = 0
    with pytest.raises(httpx.RemoteProtocolError):
        async with client.stream("GET", path) as r:
            assert r.status_code == 200 and int(r.headers["content-length"]) == size
            async for chunk in r.aiter_raw():
                received += len(chunk)
    assert received < size
    return received


def assert_clean_log(registry: Registry, since: int) -> None:
    registry.sync_log()
    text = "\n".join(registry.log_lines()[since:])
    assert "Traceback" not in text and "Exception in ASGI application" not in text, text[-3000:]


async def healed(client: httpx.AsyncClient, stub: Stub, registry: Registry, stream: str, layer: bytes) -> None:
    """The upstream serves the right bytes again: the pull gets them, and they are stored."""
    digest = sha256(layer)
    stub.routes[f"/v2/x/app/blobs/{digest}"] = reply(200, layer)
    r = await client.get(f"/v2/faults/{stream}/blobs/{digest}")
    assert r.status_code == 200 and r.content == layer
    assert digest in registry.stored_blobs()


async def test_tampered_blob_is_cut_short_and_never_stored(registry):
    stub = await Stub().start()
    try:
        layer = os.urandom(LAYER)
        digest = serve_image(stub, layer)
        stub.routes[f"/v2/x/app/blobs/{digest}"] = reply(200, os.urandom(LAYER))  # right size, wrong bytes
        async with httpx.AsyncClient(base_url=registry.url, timeout=30) as client:
            await import_from(client, stub, "tampered")
            mark = len(registry.log_lines())
            await pull_cut_short(client, f"/v2/faults/tampered/blobs/{digest}", LAYER)
            assert digest not in registry.stored_blobs()
            assert_clean_log(registry, mark)
            await healed(client, stub, registry, "tampered", layer)
    finally:
        await stub.close()


async def test_stalled_upstream_ends_within_the_read_timeout(registry):
    stub = await Stub().start()
    try:
        layer = os.urandom(LAYER)
        digest = serve_image(stub, layer)

        async def stall(seen, writer):
            head = ["HTTP/1.1 200 OK", f"Content-Length: {LAYER}", "Connection: close", "", ""]
            writer.write("\r\n".join(head).encode() + layer[: LAYER // 4])
            await writer.drain()
            await asyncio.sleep(30)

        stub.routes[f"/v2/x/app/blobs/{digest}"] = stall
        async with httpx.AsyncClient(base_url=registry.url, timeout=30) as client:
            await import_from(client, stub, "stalled")
            mark = len(registry.log_lines())
            started = asyncio.get_running_loop().time()
            await pull_cut_short(client, f"/v2/faults/stalled/blobs/{digest}", LAYER)
            assert asyncio.get_running_loop().time() - started < 10  # read_timeout 1s, not the stub's 30s
            assert digest not in registry.stored_blobs()
            assert_clean_log(registry, mark)
            await healed(client, stub, registry, "stalled", layer)
    finally:
        await stub.close()


async def test_missing_or_unreachable_upstream_is_an_oci_error_naming_it(registry):
    stub = await Stub().start()
    layer = os.urandom(4096)
    digest = serve_image(stub, layer)  # no route for the layer: 404
    async with httpx.AsyncClient(base_url=registry.url, timeout=30) as client:
        await import_from(client, stub, "gone")
        r = await client.get(f"/v2/faults/gone/blobs/{digest}")
        assert r.status_code == 404
        error = r.json()["errors"][0]
        assert error["code"] == "BLOB_UNKNOWN" and stub.host in error["message"], error
        await stub.close()  # now nothing answers there
        r = await client.get(f"/v2/faults/gone/blobs/{digest}")
        assert r.status_code == 503
        error = r.json()["errors"][0]
        assert error["code"] == "UNAVAILABLE" and stub.host in error["message"], error
        # HEAD answers from the manifest, without the upstream
        r = await client.head(f"/v2/faults/gone/blobs/{digest}")
        assert r.status_code == 200 and int(r.headers["content-length"]) == len(layer)
