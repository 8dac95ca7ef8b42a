"""The Content Management workflow of the OCI distribution-spec v1.1 conformance suite
(conformance/04_management_test.go; also 08_manifest_delete_test.go and 09_blob_delete_test.go of
the other layout).

The suite tolerates registries that disallow deletion (400 UNSUPPORTED / 405); Okura enables
deletes by default, so these tests require the success answers: tag delete 202 (untag only),
manifest delete 202, blob delete 202, and 404s afterwards.
"""

from __future__ import annotations

import pytest

from tests.protocol.conformance_data import TEST_TAG, ConformanceData, build
from tests.support.http import assert_error, put_manifest, upload_blob
from tests.support.media_types import OCI_MANIFEST

NS = "conformance/management"


@pytest.fixture
async def managed(client) -> ConformanceData:
    data = build()
    for blob in (data.configs[3], data.layer):
        r = await upload_blob(client, NS, blob.content)
        assert 200 <= r.status_code < 300, r.text
    r = await put_manifest(client, NS, TEST_TAG, data.manifests[3].content)
    assert 200 <= r.status_code < 300, r.text
    return data


async def _tags(client) -> list[str]:
    r = await client.get(f"/v2/{NS}/tags/list")
    assert r.status_code == 200, r.text
    return r.json()["tags"]


async def test_manifest_delete_workflow(client, managed):
    data = managed
    num_tags = len(await _tags(client))
    assert num_tags == 1

    # DELETE request to manifest tag should return 202 (unless tag deletion is disallowed)
    r = await client.delete(f"/v2/{NS}/manifests/{TEST_TAG}")
    assert r.status_code == 202, r.text
    assert_error(await client.get(f"/v2/{NS}/manifests/{TEST_TAG}"), 404, "MANIFEST_UNKNOWN")

    # DELETE request to manifest (digest) should yield 202 (the tag delete left the manifest in place)
    r = await client.delete(f"/v2/{NS}/manifests/{data.manifests[3].digest}")
    assert r.status_code == 202, r.text

    # GET request to deleted manifest URL should yield 404
    r = await client.get(f"/v2/{NS}/manifests/{data.manifests[3].digest}", headers={"Accept": OCI_MANIFEST})
    assert_error(r, 404, "MANIFEST_UNKNOWN")

    # GET request to tags list should reflect manifest deletion
    assert len(await _tags(client)) < num_tags


async def test_delete_by_digest_removes_its_tags(client, managed):
    data = managed
    r = await client.delete(f"/v2/{NS}/manifests/{data.manifests[3].digest}")
    assert r.status_code == 202, r.text
    assert_error(await client.get(f"/v2/{NS}/manifests/{TEST_TAG}"), 404, "MANIFEST_UNKNOWN")
    assert await _tags(client) == []
    # Deleting it again: already gone.
    assert_error(await client.delete(f"/v2/{NS}/manifests/{data.manifests[3].digest}"), 404, "MANIFEST_UNKNOWN")


async def test_blob_delete_workflow(client, managed):
    data = managed
    for blob in (data.configs[3], data.layer):
        r = await client.delete(f"/v2/{NS}/blobs/{blob.digest}")
        assert r.status_code == 202, r.text
        assert r.content == b""
    assert_error(await client.get(f"/v2/{NS}/blobs/{data.configs[3].digest}"), 404, "BLOB_UNKNOWN")
    assert_error(await client.head(f"/v2/{NS}/blobs/{data.layer.digest}"), 404)
