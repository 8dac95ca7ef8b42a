"""Two worker processes on one data directory behave as one registry."""

from __future__ import annotations

import asyncio
import json
import os
import re
from pathlib import Path

import httpx
import pytest

from tests.support.digests import sha256

pytestmark = pytest.mark.e2e

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"


class FreshConnections:
    """Every request on a new TCP connection, so the kernel spreads them over the workers."""

    def __init__(self, base_url: str):
        self.client = httpx.AsyncClient(
            base_url=base_url, timeout=60, limits=httpx.Limits(max_keepalive_connections=0, max_connections=64)
        )
        self.count = 0

    async def request(self, method: str, url: str, **kwargs) -> httpx.Response:
        self.count += 1
        return await self.client.request(
            method, url, headers={"Connection": "close", **kwargs.pop("headers", {})}, **kwargs
        )

    async def aclose(self) -> None:
        await self.client.aclose()


def _metric_total(text: str, name: str) -> float:
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            total += float(line.rsplit(" ", 1)[1])
    return total


def _counter_pids(server) -> set[str]:
    from registry.server.run import metrics_dir_base

    metrics_dir = Path(metrics_dir_base()) / f"okura-metrics-{server.pid}"
    return {m.group(1) for p in metrics_dir.glob("counter_*.db") if (m := re.match(r"counter_(\d+)\.db", p.name))}


async def _push_image(http: FreshConnections, repo: str, tag: str, nonce: str) -> str:
    config = json.dumps({"architecture": "amd64", "os": "linux", "nonce": nonce}).encode()
    layer = os.urandom(4096)
    for blob in (config, layer):
        r = await http.request("POST", f"/v2/{repo}/blobs/uploads/", params={"digest": sha256(blob)}, content=blob)
        assert r.status_code == 201, r.text
    body = json.dumps(
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
    r = await http.request("PUT", f"/v2/{repo}/manifests/{tag}", content=body, headers={"Content-Type": OCI_MANIFEST})
    assert r.status_code == 201, r.text
    return sha256(body)


async def test_two_workers(start_server):
    server = start_server(workers=2)
    http = FreshConnections(server.url)
    try:
        # Many monolithic pushes and pulls, each on its own connection.
        blobs = [os.urandom(10_000 + i) for i in range(40)]

        async def push_and_pull(i: int, data: bytes) -> None:
            repo = f"multi{i % 3}/app"
            r = await http.request("POST", f"/v2/{repo}/blobs/uploads/", params={"digest": sha256(data)}, content=data)
            assert r.status_code == 201, r.text
            r = await http.request("GET", f"/v2/{repo}/blobs/{sha256(data)}")
            assert r.status_code == 200
            assert r.content == data

        await asyncio.gather(*(push_and_pull(i, b) for i, b in enumerate(blobs)))

        # Chunked uploads whose PATCHes and PUT land on arbitrary workers.
        async def chunked(n: int) -> None:
            data = os.urandom(1_000_000 + n)
            repo = "chunked/app"
            r = await http.request("POST", f"/v2/{repo}/blobs/uploads/")
            assert r.status_code == 202
            location = r.headers["Location"]
            step = 100_000
            for start in range(0, len(data), step):
                part = data[start : start + step]
                r = await http.request(
                    "PATCH",
                    location,
                    content=part,
                    headers={
                        "Content-Range": f"{start}-{start + len(part) - 1}",
                        "Content-Type": "application/octet-stream",
                    },
                )
                assert r.status_code == 202, r.text
                location = r.headers["Location"]
                r = await http.request("GET", location)  # status from (possibly) the other worker
                assert r.status_code == 204
                assert r.headers["Range"] == f"0-{start + len(part) - 1}"
            r = await http.request("PUT", location, params={"digest": sha256(data)})
            assert r.status_code == 201, r.text
            r = await http.request("GET", f"/v2/{repo}/blobs/{sha256(data)}")
            assert r.status_code == 200
            assert r.content == data

        await asyncio.gather(*(chunked(n) for n in range(4)))

        assert len(_counter_pids(server)) >= 2, "only one worker served requests"

        # A tag moved by one worker is seen by every worker at once.
        repo = "moving/app"
        digest = await _push_image(http, repo, "latest", "v0")
        for round_ in range(1, 5):
            for _ in range(10):  # warm both workers' caches with the current digest
                r = await http.request("GET", f"/v2/{repo}/manifests/latest", headers={"Accept": OCI_MANIFEST})
                assert r.headers["Docker-Content-Digest"] == digest
            new_digest = await _push_image(http, repo, "latest", f"v{round_}")
            assert new_digest != digest
            digest = new_digest
            for i in range(50):
                method = "HEAD" if i % 5 == 4 else "GET"
                r = await http.request(method, f"/v2/{repo}/manifests/latest", headers={"Accept": OCI_MANIFEST})
                assert r.status_code == 200
                assert r.headers["Docker-Content-Digest"] == digest, f"stale tag after move (round {round_}, GET {i})"
                if method == "GET":
                    assert sha256(r.content) == digest

        # New tags, deleted tags and deleted blob links are seen by every worker at once.
        for n in range(3):
            for _ in range(6):  # cache the tag list in both workers
                r = await http.request("GET", f"/v2/{repo}/tags/list")
                assert r.status_code == 200
            await _push_image(http, repo, f"new{n}", f"new{n}")
            for _ in range(20):
                r = await http.request("GET", f"/v2/{repo}/tags/list")
                assert f"new{n}" in r.json()["tags"], "a new tag is missing from a worker's tag list"
        r = await http.request("DELETE", f"/v2/{repo}/manifests/new0")
        assert r.status_code == 202, r.text
        for _ in range(20):
            r = await http.request("GET", f"/v2/{repo}/manifests/new0")
            assert r.status_code == 404, "a deleted tag is still served"
            assert "new0" not in (await http.request("GET", f"/v2/{repo}/tags/list")).json()["tags"]
        gone = sha256(blobs[0])
        for _ in range(6):  # cache the blob link in both workers
            assert (await http.request("HEAD", f"/v2/multi0/app/blobs/{gone}")).status_code == 200
        r = await http.request("DELETE", f"/v2/multi0/app/blobs/{gone}")
        assert r.status_code == 202, r.text
        for _ in range(20):
            r = await http.request("HEAD", f"/v2/multi0/app/blobs/{gone}")
            assert r.status_code == 404, "a deleted blob link is still served"

        # /metrics aggregates the request counts of both workers.
        made = http.count
        await asyncio.sleep(0.2)
        r = await http.request("GET", "/metrics")
        assert r.status_code == 200
        total = _metric_total(r.text, "imageregistry_http_requests_total")
        assert total >= made, f"metrics count {total} requests, the test made {made}"
        assert total < made + 50  # and nothing wildly off
    finally:
        await http.aclose()


async def test_racing_patches_on_one_upload(start_server):
    """Two PATCHes for the same range of one session, arriving at once (on different
    connections, so on either worker): one wins, the other gets 416, and the session
    holds exactly the winner's bytes."""
    server = start_server(workers=2)
    http = FreshConnections(server.url)
    try:
        for trial in range(12):
            r = await http.request("POST", "/v2/race/app/blobs/uploads/")
            location = r.headers["Location"]
            a, b = os.urandom(300_000), os.urandom(300_000)
            ra, rb = await asyncio.gather(
                *(
                    http.request("PATCH", location, content=x, headers={"Content-Range": f"0-{len(x) - 1}"})
                    for x in (a, b)
                )
            )
            assert sorted([ra.status_code, rb.status_code]) == [202, 416], (trial, ra.text, rb.text)
            winner = a if ra.status_code == 202 else b
            r = await http.request("GET", location)
            assert r.headers["Range"] == f"0-{len(winner) - 1}"
            r = await http.request("PUT", location, params={"digest": sha256(winner)})
            assert r.status_code == 201, r.text
            r = await http.request("GET", f"/v2/race/app/blobs/{sha256(winner)}")
            assert r.content == winner
        assert server.upload_files() == []
    finally:
        await http.aclose()
