"""The Pull workflow of the OCI distribution-spec v1.1 conformance suite (conformance/01_pull_test.go).

Setup pushes configs[0], configs[1] and the layer with POST+PUT, manifests[0] under the tag
`tagtest0` and manifests[1] by digest; the checks are the suite's, tightened where the suite
only checks a header "if present" (the registry always sends Docker-Content-Digest).
"""

from __future__ import annotations

import pytest

from tests.protocol.conformance_data import (
    CONFORMANCE_ERROR_CODES,
    DUMMY_DIGEST,
    INVALID_MANIFEST,
    NONEXISTENT_MANIFEST,
    TEST_TAG,
    ConformanceData,
    build,
)
from tests.support.http import assert_error, put_manifest, upload_blob
from tests.support.media_types import OCI_MANIFEST

NS = "conformance/pull"
ACCEPT = {"Accept": OCI_MANIFEST}


@pytest.fixture
async def pulled(client) -> ConformanceData:
    data = build()
    for blob in (data.configs[0], data.configs[1], data.layer):
        r = await upload_blob(client, NS, blob.content)
        assert 200 <= r.status_code < 300, r.text
    r = await put_manifest(client, NS, TEST_TAG, data.manifests[0].content)
    assert 200 <= r.status_code < 300, r.text
    r = await put_manifest(client, NS, data.manifests[1].digest, data.manifests[1].content)
    assert 200 <= r.status_code < 300, r.text
    return data


async def test_pull_blobs(client, pulled):
    # HEAD request to nonexistent blob should result in 404 response
    assert_error(await client.head(f"/v2/{NS}/blobs/{DUMMY_DIGEST}"), 404)
    # HEAD request to existing blob should yield 200
    config = pulled.configs[0]
    r = await client.head(f"/v2/{NS}/blobs/{config.digest}")
    assert r.status_code == 200
    assert r.headers["Docker-Content-Digest"] == config.digest
    assert r.headers["Content-Length"] == config.length
    assert r.content == b""
    # GET nonexistent blob should result in 404 response
    assert_error(await client.get(f"/v2/{NS}/blobs/{DUMMY_DIGEST}"), 404, "BLOB_UNKNOWN")
    # GET request to existing blob URL should yield 200
    for blob in (pulled.configs[0], pulled.configs[1], pulled.layer):
        r = await client.get(f"/v2/{NS}/blobs/{blob.digest}")
        assert r.status_code == 200
        assert r.content == blob.content
        assert r.headers["Docker-Content-Digest"] == blob.digest


async def test_pull_nonexistent_manifest_is_404(client, pulled):
    """HEAD and GET of the reference ".INVALID_MANIFEST_NAME" (not a valid tag) must answer 404."""
    r = await client.head(f"/v2/{NS}/manifests/{NONEXISTENT_MANIFEST}", headers=ACCEPT)
    assert_error(r, 404)
    r = await client.get(f"/v2/{NS}/manifests/{NONEXISTENT_MANIFEST}", headers=ACCEPT)
    assert_error(r, 404, "MANIFEST_UNKNOWN")


async def test_pull_manifests(client, pulled):
    # HEAD request to manifest[0] / manifest[1] path (digest) should yield 200 response
    for manifest in pulled.manifests[:2]:
        r = await client.head(f"/v2/{NS}/manifests/{manifest.digest}", headers=ACCEPT)
        assert r.status_code == 200
        assert r.headers["Docker-Content-Digest"] == manifest.digest
        assert r.headers["Content-Length"] == manifest.length
        assert r.content == b""
    # HEAD request to manifest path (tag) should yield 200 response
    r = await client.head(f"/v2/{NS}/manifests/{TEST_TAG}", headers=ACCEPT)
    assert r.status_code == 200
    assert r.headers["Docker-Content-Digest"] == pulled.manifests[0].digest
    # GET request to manifest[0] / manifest[1] path (digest) should yield 200 response
    for manifest in pulled.manifests[:2]:
        r = await client.get(f"/v2/{NS}/manifests/{manifest.digest}", headers=ACCEPT)
        assert r.status_code == 200
        assert r.content == manifest.content
        assert r.headers["Docker-Content-Digest"] == manifest.digest
        assert r.headers["Content-Type"] == OCI_MANIFEST
    # GET request to manifest path (tag) should yield 200 response
    r = await client.get(f"/v2/{NS}/manifests/{TEST_TAG}", headers=ACCEPT)
    assert r.status_code == 200
    assert r.content == pulled.manifests[0].content
    assert r.headers["Docker-Content-Digest"] == pulled.manifests[0].digest


async def test_malformed_digest_reference_gives_conforming_error(client, pulled):
    """Error codes: GET manifests/sha256:totallywrong answers 400 (with an OCI code) or 404."""
    r = await client.request(
        "GET",
        f"/v2/{NS}/manifests/sha256:totallywrong",
        content=INVALID_MANIFEST,
        headers={"Content-Type": OCI_MANIFEST},
    )
    assert r.status_code in (400, 404)
    error = assert_error(r, r.status_code)
    if r.status_code == 400:
        assert error["code"] in CONFORMANCE_ERROR_CODES


async def test_put_to_malformed_digest_reference_is_400_with_conforming_code(client, pulled):
    """Error codes (07_error_codes_test.go; the older 01_pull_test.go): PUT manifests/sha256:totallywrong."""
    r = await put_manifest(client, NS, "sha256:totallywrong", INVALID_MANIFEST)
    error = assert_error(r, 400)
    assert error["code"] in CONFORMANCE_ERROR_CODES


async def test_teardown_deletes(client, pulled):
    """Teardown (manifests before blobs): manifest deletes 2xx; blob deletes 2xx (404 tolerated)."""
    for manifest in pulled.manifests[:2]:
        r = await client.delete(f"/v2/{NS}/manifests/{manifest.digest}")
        assert r.status_code == 202, r.text
    for blob in (pulled.configs[0], pulled.configs[1], pulled.layer):
        r = await client.delete(f"/v2/{NS}/blobs/{blob.digest}")
        assert r.status_code in (202, 404), r.text
    for manifest in pulled.manifests[:2]:
        assert_error(await client.get(f"/v2/{NS}/manifests/{manifest.digest}"), 404, "MANIFEST_UNKNOWN")
    assert_error(await client.get(f"/v2/{NS}/manifests/{TEST_TAG}"), 404, "MANIFEST_UNKNOWN")
