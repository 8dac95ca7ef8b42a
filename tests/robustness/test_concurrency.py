"""Many clients racing on one blob, and on one tag."""

from __future__ import annotations

import asyncio
import json
import os

import httpx
import pytest

from tests.support.blobs import MiB
from tests.support.digests import sha256

pytestmark = pytest.mark.e2e

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"


async def _push_same_blob(server, repos: list[str], data: bytes) -> list[httpx.Response]:
    """Each repo gets its own client (own connections); all closing PUTs are released at once."""
    digest = sha256(data)
    half = len(data) // 2
    barrier = asyncio.Barrier(len(repos))
    statuses: list[httpx.Response] = []

    async def one(repo: str) -> None:
        async with httpx.AsyncClient(base_url=server.url, timeout=60) as client:
            r = await client.post(f"/v2/{repo}/blobs/uploads/")
            assert r.status_code == 202, r.text
            location = r.headers["Location"]
            for start, part in ((0, data[:half]), (half, data[half:])):
                r = await client.patch(
                    location,
                    content=part,
                    headers={
                        "Content-Range": f"{start}-{start + len(part) - 1}",
                        "Content-Type": "application/octet-stream",
                    },
                )
                assert r.status_code == 202, r.text
                location = r.headers["Location"]
            await barrier.wait()
            r = await client.put(location, params={"digest": digest})
            statuses.append(r)

    await asyncio.gather(*(one(repo) for repo in repos))
    return statuses


async def test_same_blob_pushed_by_many_clients(server):
    data = os.urandom(3 * MiB + 17)
    digest = sha256(data)
    # 12 clients: six into one shared repository, six into repositories of their own.
    repos = ["shared/app"] * 6 + [f"team{i}/app" for i in range(6)]
    for round_ in range(2):  # the second round commits over the existing blob
        responses = await _push_same_blob(server, repos, data)
        assert [r.status_code for r in responses] == [201] * len(repos), [(r.status_code, r.text) for r in responses]
        assert all(r.headers["Docker-Content-Digest"] == digest for r in responses)

        async with httpx.AsyncClient(base_url=server.url, timeout=60) as client:
            for repo in sorted(set(repos)):
                r = await client.get(f"/v2/{repo}/blobs/{digest}")
                assert r.status_code == 200, (round_, repo, r.text)
                assert r.headers["Docker-Content-Digest"] == digest
                assert r.content == data

        hex_ = digest.split(":", 1)[1]
        assert server.blob_files() == [server.blob_dir / "sha256" / hex_[:2] / hex_]
        assert server.upload_files() == [], "upload files left behind"


async def test_same_blob_monolithic_and_chunked_at_once(server):
    """POST ?digest= monolithic pushes racing chunked ones for the same content."""
    data = os.urandom(MiB)
    digest = sha256(data)

    async def monolithic(repo: str) -> int:
        async with httpx.AsyncClient(base_url=server.url, timeout=60) as client:
            r = await client.post(f"/v2/{repo}/blobs/uploads/", params={"digest": digest}, content=data)
            return r.status_code

    results = await asyncio.gather(
        *(monolithic(f"mono{i}/app") for i in range(8)),
        _push_same_blob(server, [f"chunked{i}/app" for i in range(4)], data),
    )
    assert list(results[:8]) == [201] * 8
    assert [r.status_code for r in results[8]] == [201] * 4
    async with httpx.AsyncClient(base_url=server.url, timeout=60) as client:
        for repo in [f"mono{i}/app" for i in range(8)] + [f"chunked{i}/app" for i in range(4)]:
            r = await client.get(f"/v2/{repo}/blobs/{digest}")
            assert r.status_code == 200
            assert r.content == data
    assert len(server.blob_files()) == 1
    assert server.upload_files() == []


def _manifest(config: bytes, layer: bytes) -> bytes:
    return json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": sha256(config),
                "size": len(config),
            },
            "layers": [
                {
                    "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                    "digest": sha256(layer),
                    "size": len(layer),
                }
            ],
        }
    ).encode()


async def test_two_manifests_race_for_one_tag(server):
    repo = "race/app"
    manifests = []
    async with httpx.AsyncClient(base_url=server.url, timeout=60) as client:
        for name in ("a", "b"):
            config = json.dumps({"architecture": "amd64", "os": "linux", "variant": name}).encode()
            layer = os.urandom(2048)
            for blob in (config, layer):
                r = await client.post(f"/v2/{repo}/blobs/uploads/", params={"digest": sha256(blob)}, content=blob)
                assert r.status_code == 201, r.text
            manifests.append(_manifest(config, layer))
    by_digest = {sha256(m): m for m in manifests}
    assert len(by_digest) == 2

    statuses: list[int] = []
    seen_by_get: set[str] = set()

    async def put(client: httpx.AsyncClient, body: bytes) -> None:
        r = await client.put(f"/v2/{repo}/manifests/race", content=body, headers={"Content-Type": OCI_MANIFEST})
        statuses.append(r.status_code)
        assert r.status_code == 201, r.text
        assert r.headers["Docker-Content-Digest"] == sha256(body)

    async def get(client: httpx.AsyncClient) -> None:
        r = await client.get(f"/v2/{repo}/manifests/race", headers={"Accept": OCI_MANIFEST})
        statuses.append(r.status_code)
        if r.status_code == 404:  # before the first PUT lands
            return
        assert r.status_code == 200, r.text
        digest = r.headers["Docker-Content-Digest"]
        assert sha256(r.content) == digest, "tag served bytes that do not match their digest"
        assert digest in by_digest
        seen_by_get.add(digest)

    clients = [httpx.AsyncClient(base_url=server.url, timeout=60) for _ in range(8)]
    try:
        for round_ in range(15):
            jobs = []
            for i, client in enumerate(clients):
                jobs.append(put(client, manifests[(i + round_) % 2]))
                jobs.append(get(client))
            await asyncio.gather(*jobs)
    finally:
        for client in clients:
            await client.aclose()

    assert not [s for s in statuses if s >= 500], statuses
    assert seen_by_get <= set(by_digest)
    async with httpx.AsyncClient(base_url=server.url, timeout=60) as client:
        r = await client.get(f"/v2/{repo}/manifests/race")
        assert r.status_code == 200
        final = r.headers["Docker-Content-Digest"]
        assert final in by_digest
        assert r.content == by_digest[final]
        assert sha256(r.content) == final
        head = await client.head(f"/v2/{repo}/manifests/race")
        assert head.headers["Docker-Content-Digest"] == final
        r = await client.get(f"/v2/{repo}/tags/list")
        assert r.status_code == 200
        assert r.json()["tags"] == ["race"]
        for digest, body in by_digest.items():  # both stay addressable by digest
            r = await client.get(f"/v2/{repo}/manifests/{digest}")
            assert r.status_code == 200
            assert r.content == body
