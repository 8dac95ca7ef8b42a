"""The Content Discovery workflow of the OCI distribution-spec v1.1 conformance suite
(conformance/03_discovery_test.go; also 05_referrers.go and 06_tags_list_test.go of the other layout).

Setup pushes manifests[2] under test0..test3, then the referrers of manifests[4]: two artifacts using
config.mediaType as the artifact type, two using artifactType with the empty JSON config, an index
artifact (all pushed before or after their subject), and one artifact whose subject (manifests[3])
is never pushed.
"""

from __future__ import annotations

import pytest

from tests.protocol.conformance_data import (
    ANNOTATION_KEY,
    ARTIFACT_TYPE_A,
    ARTIFACT_TYPE_B,
    ARTIFACT_TYPE_INDEX,
    DUMMY_DIGEST,
    EMPTY_JSON_DIGEST,
    TEST_TAG,
    ConformanceData,
    build,
)
from tests.support.http import assert_error, put_manifest, upload_blob
from tests.support.media_types import OCI_INDEX, OCI_MANIFEST

NS = "conformance/discovery"
TAGS = [f"test{i}" for i in range(4)]


async def _push_blob(client, content: bytes) -> None:
    r = await upload_blob(client, NS, content)
    assert 200 <= r.status_code < 300, r.text


async def _push_referrer(client, manifest, subject: str, media_type: str = OCI_MANIFEST) -> None:
    r = await put_manifest(client, NS, manifest.digest, manifest.content, media_type)
    assert 200 <= r.status_code < 300, r.text
    assert r.headers.get("OCI-Subject") == subject, r.headers


@pytest.fixture
async def discovered(client) -> ConformanceData:
    data = build()
    # Populate registry with test blob, layer and tags
    await _push_blob(client, data.configs[2].content)
    await _push_blob(client, data.layer.content)
    for tag in TAGS:
        r = await put_manifest(client, NS, tag, data.manifests[2].content)
        assert 200 <= r.status_code < 300, r.text
    # References setup
    assert data.empty_json.digest == EMPTY_JSON_DIGEST
    await _push_blob(client, data.empty_json.content)
    await _push_blob(client, data.ref_blob_a.content)  # before the subject is pushed
    subject = data.manifests[4].digest
    await _push_referrer(client, data.refs_a_config, subject)
    await _push_referrer(client, data.refs_a_layer, subject)
    await _push_referrer(client, data.refs_index, subject, OCI_INDEX)
    await _push_blob(client, data.configs[4].content)
    await _push_blob(client, data.layer.content)
    r = await put_manifest(client, NS, TEST_TAG, data.manifests[4].content)
    assert 200 <= r.status_code < 300, r.text
    await _push_blob(client, data.ref_blob_b.content)  # after the subject is pushed
    await _push_referrer(client, data.refs_b_config, subject)
    await _push_referrer(client, data.refs_b_layer, subject)
    await _push_referrer(client, data.refs_c_layer, data.manifests[3].digest)  # dangling subject
    return data


def _tags(response) -> list[str]:
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["name"] == NS
    return body["tags"]


# -- listing tags ---------------------------------------------------------------------------------


async def test_listing_tags(client, discovered):
    # GET request to list tags should yield 200 response
    all_tags = _tags(await client.get(f"/v2/{NS}/tags/list"))
    assert all_tags == sorted([*TAGS, TEST_TAG])
    # GET number of tags should be limitable by `n` query parameter
    n = len(all_tags) // 2
    first = _tags(await client.get(f"/v2/{NS}/tags/list", params={"n": n}))
    assert first == all_tags[:n]
    # GET start of tag is set by `last` query parameter
    page = _tags(await client.get(f"/v2/{NS}/tags/list", params={"n": n, "last": first[n - 1]}))
    assert len(page) <= n
    assert page == all_tags[n : 2 * n]
    assert first[n - 1] not in page


# -- listing referrers ----------------------------------------------------------------------------


def _index(response) -> list[dict]:
    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"] == OCI_INDEX
    body = response.json()
    assert body["schemaVersion"] == 2
    assert body["mediaType"] == OCI_INDEX
    return body["manifests"]


async def test_referrers_of_existing_subject(client, discovered):
    data = discovered
    manifests = _index(await client.get(f"/v2/{NS}/referrers/{data.manifests[4].digest}"))
    assert len(manifests) == 5
    assert len({m["digest"] for m in manifests}) == 5
    for m in manifests:
        assert len(m["annotations"]) == 1
        assert m["annotations"][ANNOTATION_KEY] == data.annotations[m["digest"]]
    expected = {
        data.refs_a_config.digest: (OCI_MANIFEST, ARTIFACT_TYPE_A, data.refs_a_config),
        data.refs_a_layer.digest: (OCI_MANIFEST, ARTIFACT_TYPE_A, data.refs_a_layer),
        data.refs_index.digest: (OCI_INDEX, ARTIFACT_TYPE_INDEX, data.refs_index),
        data.refs_b_config.digest: (OCI_MANIFEST, ARTIFACT_TYPE_B, data.refs_b_config),
        data.refs_b_layer.digest: (OCI_MANIFEST, ARTIFACT_TYPE_B, data.refs_b_layer),
    }
    assert {m["digest"] for m in manifests} == set(expected)
    for m in manifests:
        media_type, artifact_type, blob = expected[m["digest"]]
        assert m["mediaType"] == media_type
        assert m["artifactType"] == artifact_type
        assert m["size"] == len(blob.content)


async def test_referrers_filtered_by_artifact_type(client, discovered):
    data = discovered
    r = await client.get(f"/v2/{NS}/referrers/{data.manifests[4].digest}", params={"artifactType": ARTIFACT_TYPE_A})
    manifests = _index(r)
    assert r.headers.get("OCI-Filters-Applied") == "artifactType"
    assert len(manifests) == 2
    assert {m["digest"] for m in manifests} == {data.refs_a_config.digest, data.refs_a_layer.digest}
    for m in manifests:
        assert m["artifactType"] == ARTIFACT_TYPE_A
        assert len(m["annotations"]) == 1
        assert m["annotations"][ANNOTATION_KEY] == data.annotations[m["digest"]]


async def test_referrers_of_nonexistent_and_missing_subjects(client, discovered):
    # GET request to nonexistent blob should result in empty 200 response
    r = await client.get(f"/v2/{NS}/referrers/{DUMMY_DIGEST}")
    assert _index(r) == []
    assert "OCI-Filters-Applied" not in r.headers

    # GET request to missing manifest should yield 200 (the dangling referrer)
    data = discovered
    assert_error(await client.get(f"/v2/{NS}/manifests/{data.manifests[3].digest}"), 404, "MANIFEST_UNKNOWN")
    manifests = _index(await client.get(f"/v2/{NS}/referrers/{data.manifests[3].digest}"))
    assert len(manifests) == 1
    assert manifests[0]["digest"] == data.refs_c_layer.digest


# -- teardown -------------------------------------------------------------------------------------


async def test_teardown_deletes_manifests_and_tags(client, discovered):
    data = discovered
    references = [
        data.refs_index.digest,
        data.manifests[2].digest,
        data.manifests[4].digest,
        data.refs_a_config.digest,
        data.refs_a_layer.digest,
        TEST_TAG,
        data.refs_b_config.digest,
        data.refs_b_layer.digest,
        data.refs_c_layer.digest,
    ]
    for ref in references:
        r = await client.delete(f"/v2/{NS}/manifests/{ref}")
        # TEST_TAG went with manifests[4]; everything else exists when deleted.
        assert r.status_code == (404 if ref == TEST_TAG else 202), (ref, r.text)
    assert _tags(await client.get(f"/v2/{NS}/tags/list")) == []
    for blob in (data.configs[2], data.layer):
        r = await client.delete(f"/v2/{NS}/blobs/{blob.digest}")
        assert r.status_code == 202, r.text
    for blob in (data.configs[4], data.ref_blob_a, data.ref_blob_b, data.empty_json):
        r = await client.delete(f"/v2/{NS}/blobs/{blob.digest}")
        assert r.status_code == 202, r.text
    assert _index(await client.get(f"/v2/{NS}/referrers/{data.manifests[4].digest}")) == []
