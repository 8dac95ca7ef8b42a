"""Small blobs from remote storage are served from memory after the first read, and
access is still decided from the metadata on every request."""

from __future__ import annotations

import os

import pytest

from tests.support.http import push_blob


@pytest.fixture(params=["s3"])
def backend(request: pytest.FixtureRequest) -> str:
    return request.param


async def test_small_blob_served_from_memory_with_ranges_and_access_checks(client, registry_model):
    reg = registry_model
    data = os.urandom(100_000)
    digest = await push_blob(client, "ns/app", data)
    first = await client.get(f"/v2/ns/app/blobs/{digest}")
    assert first.status_code == 200 and first.content == data
    await reg.storage.delete(digest)  # only the cache can answer now
    again = await client.get(f"/v2/ns/app/blobs/{digest}")
    assert again.status_code == 200 and again.content == data
    assert again.headers["Docker-Content-Digest"] == digest
    part = await client.get(f"/v2/ns/app/blobs/{digest}", headers={"Range": "bytes=10-19"})
    assert part.status_code == 206 and part.content == data[10:20]
    assert part.headers["Content-Range"] == f"bytes 10-19/{len(data)}"
    assert (await client.get(f"/v2/ns/other/blobs/{digest}")).status_code == 404  # not linked there
    assert (await client.delete(f"/v2/ns/app/blobs/{digest}")).status_code == 202
    assert (await client.get(f"/v2/ns/app/blobs/{digest}")).status_code == 404


async def test_large_blobs_stream_past_the_cache(client, registry_model):
    reg = registry_model
    data = os.urandom(reg.config.cache.blob_max_size + 1)
    digest = await push_blob(client, "ns/app", data)
    assert (await client.get(f"/v2/ns/app/blobs/{digest}")).content == data
    await reg.storage.delete(digest)
    r = await client.get(f"/v2/ns/app/blobs/{digest}")
    assert r.status_code == 404  # read from storage again: recorded but gone
