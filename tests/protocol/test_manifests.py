"""GET/HEAD/PUT/DELETE /v2/<name>/manifests/<reference>: every manifest kind by tag and by digest,
exact bytes, media types, validation errors, the size limit, and deletes by digest and by tag."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import pytest

from tests.support.digests import sha256
from tests.support.http import assert_error, descriptor, push_blob, push_image, put_manifest
from tests.support.media_types import DOCKER_LIST, DOCKER_MANIFEST, EMPTY_CONFIG, OCI_INDEX, OCI_LAYER, OCI_MANIFEST

REPO = "manifests/repo"
MiB = 1 << 20


async def _artifact(client, *, config_type: str, artifact_type: str | None, config: bytes) -> bytes:
    await push_blob(client, REPO, config)
    payload = b"artifact payload"
    await push_blob(client, REPO, payload)
    doc: dict[str, Any] = {"schemaVersion": 2, "mediaType": OCI_MANIFEST}
    if artifact_type:
        doc["artifactType"] = artifact_type
    doc["config"] = descriptor(config_type, config)
    doc["layers"] = [descriptor("application/vnd.example.payload", payload)]
    return json.dumps(doc).encode()


async def _index(client, media_type: str, child_type: str) -> bytes:
    children = []
    for arch in ("amd64", "arm64"):
        digest, body = await push_image(client, REPO, media_type=child_type)
        children.append(
            {
                "mediaType": child_type,
                "digest": digest,
                "size": len(body),
                "platform": {"os": "linux", "architecture": arch},
            }
        )
    return json.dumps({"schemaVersion": 2, "mediaType": media_type, "manifests": children}).encode()


async def build_manifest(client, kind: str) -> tuple[bytes, str]:
    """Push what the manifest needs; return (body, media type) of a manifest of that kind."""
    if kind == "docker-schema2":
        _, body = await push_image(client, REPO, media_type=DOCKER_MANIFEST)
        return body, DOCKER_MANIFEST
    if kind == "oci-manifest":
        _, body = await push_image(client, REPO, layers=2)
        return body, OCI_MANIFEST
    if kind == "docker-list":
        return await _index(client, DOCKER_LIST, DOCKER_MANIFEST), DOCKER_LIST
    if kind == "oci-index":
        return await _index(client, OCI_INDEX, OCI_MANIFEST), OCI_INDEX
    if kind == "artifact-empty-config":
        body = await _artifact(
            client, config_type=EMPTY_CONFIG, artifact_type="application/vnd.example.sbom", config=b"{}"
        )
        return body, OCI_MANIFEST
    if kind == "artifact-custom-config":
        body = await _artifact(
            client, config_type="application/vnd.example.config+yaml", artifact_type=None, config=b"key: value\n"
        )
        return body, OCI_MANIFEST
    raise AssertionError(kind)


KINDS = [
    "docker-schema2",
    "oci-manifest",
    "docker-list",
    "oci-index",
    "artifact-empty-config",
    "artifact-custom-config",
]


@pytest.mark.parametrize("kind", KINDS)
async def test_put_by_digest_and_by_tag_then_get_and_head(client, kind):
    body, media_type = await build_manifest(client, kind)
    digest = sha256(body)

    # By digest: stored, no tag created.
    r = await put_manifest(client, REPO, digest, body, media_type)
    assert r.status_code == 201, r.text
    assert r.headers["Location"] == f"/v2/{REPO}/manifests/{digest}"
    assert r.headers["Docker-Content-Digest"] == digest
    assert r.content == b""
    assert (await client.get(f"/v2/{REPO}/tags/list")).json()["tags"] == []

    # By tag.
    r = await put_manifest(client, REPO, "v1", body, media_type)
    assert r.status_code == 201, r.text
    assert r.headers["Location"] == f"/v2/{REPO}/manifests/{digest}"
    assert r.headers["Docker-Content-Digest"] == digest
    assert (await client.get(f"/v2/{REPO}/tags/list")).json()["tags"] == ["v1"]

    for reference in ("v1", digest):
        r = await client.get(f"/v2/{REPO}/manifests/{reference}", headers={"Accept": media_type})
        assert r.status_code == 200
        assert r.content == body
        assert r.headers["Content-Type"] == media_type
        assert r.headers["Docker-Content-Digest"] == digest
        assert r.headers["Content-Length"] == str(len(body))
        r = await client.head(f"/v2/{REPO}/manifests/{reference}")
        assert r.status_code == 200
        assert r.content == b""
        assert r.headers["Content-Type"] == media_type
        assert r.headers["Docker-Content-Digest"] == digest
        assert r.headers["Content-Length"] == str(len(body))


async def test_put_by_tag_first(client):
    body, media_type = await build_manifest(client, "oci-index")
    r = await put_manifest(client, REPO, "first", body, media_type)
    assert r.status_code == 201, r.text
    r = await client.get(f"/v2/{REPO}/manifests/{sha256(body)}")
    assert r.status_code == 200
    assert r.content == body


async def test_exact_bytes_are_stored_and_returned(client):
    config = await push_blob(client, REPO, b"{}")
    text = (
        '{\n   "schemaVersion" :2,"mediaType":"application/vnd.oci.image.manifest.v1+json",\n'
        f'\t"config":{{"mediaType":"application/vnd.oci.empty.v1+json","size":2,"digest":"{config}"}},\n'
        '"layers":[ ],"annotations":{"z":"\\u00e9t\\u00e9","a":"\u00e9t\u00e9","n":"x"}  }\n\n'
    )
    body = text.encode()
    r = await put_manifest(client, REPO, "exact", body)
    assert r.status_code == 201, r.text
    assert r.headers["Docker-Content-Digest"] == sha256(body)
    r = await client.get(f"/v2/{REPO}/manifests/exact")
    assert r.content == body
    assert (await client.get(f"/v2/{REPO}/manifests/{sha256(body)}")).content == body


async def test_content_type_parameters_are_ignored(client):
    digest, body = await push_image(client, REPO, "plain")
    r = await put_manifest(client, REPO, "params", body, f"{OCI_MANIFEST}; charset=utf-8")
    assert r.status_code == 201, r.text
    assert r.headers["Docker-Content-Digest"] == digest
    r = await client.get(f"/v2/{REPO}/manifests/params")
    assert r.headers["Content-Type"] == OCI_MANIFEST


async def test_manifest_without_media_type_field_takes_the_content_type(client):
    config = await push_blob(client, REPO, b"{}")
    body = json.dumps(
        {"schemaVersion": 2, "config": {"mediaType": EMPTY_CONFIG, "digest": config, "size": 2}, "layers": []}
    ).encode()
    r = await put_manifest(client, REPO, "nomediatype", body, OCI_MANIFEST)
    assert r.status_code == 201, r.text
    r = await client.get(f"/v2/{REPO}/manifests/nomediatype")
    assert r.headers["Content-Type"] == OCI_MANIFEST
    assert r.content == body


async def test_retag_moves_tag_and_keeps_old_manifest(client):
    first, _ = await push_image(client, REPO, "moving")
    second, body = await push_image(client, REPO, "moving")
    assert first != second
    r = await client.get(f"/v2/{REPO}/manifests/moving")
    assert r.headers["Docker-Content-Digest"] == second
    assert r.content == body
    assert (await client.get(f"/v2/{REPO}/manifests/{first}")).status_code == 200


async def test_same_manifest_pushed_twice(client):
    digest, body = await push_image(client, REPO, "a")
    for reference in ("a", "b", digest):
        r = await put_manifest(client, REPO, reference, body)
        assert r.status_code == 201, r.text
        assert r.headers["Docker-Content-Digest"] == digest
    assert sorted((await client.get(f"/v2/{REPO}/tags/list")).json()["tags"]) == ["a", "b"]


async def test_sha512_manifest_reference(client):
    _, body = await push_image(client, REPO, "for512")
    digest = "sha512:" + hashlib.sha512(body).hexdigest()
    r = await put_manifest(client, REPO, digest, body)
    assert r.status_code == 201, r.text
    assert r.headers["Docker-Content-Digest"] == digest
    r = await client.get(f"/v2/{REPO}/manifests/{digest}")
    assert r.status_code == 200
    assert r.content == body
    assert r.headers["Docker-Content-Digest"] == digest


# -- validation errors ----------------------------------------------------------------------------


async def test_invalid_json_is_400_manifest_invalid(client):
    for body in (b"blablabla", b"{not json", b'{"schemaVersion": 2,}', b""):
        assert_error(await put_manifest(client, REPO, "bad", body), 400, "MANIFEST_INVALID")


async def test_media_type_contradicting_content_type_is_400(client):
    _, oci_body = await push_image(client, REPO, media_type=OCI_MANIFEST)
    _, docker_body = await push_image(client, REPO, media_type=DOCKER_MANIFEST)
    index_body = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": []}).encode()
    for content_type, body in (
        (OCI_INDEX, oci_body),
        (DOCKER_MANIFEST, oci_body),
        (OCI_MANIFEST, docker_body),
        (DOCKER_LIST, index_body),
        (OCI_MANIFEST, index_body),
    ):
        r = await put_manifest(client, REPO, "mismatch", body, content_type)
        assert_error(r, 400, "MANIFEST_INVALID")
    assert_error(await client.get(f"/v2/{REPO}/manifests/mismatch"), 404, "MANIFEST_UNKNOWN")


async def test_missing_config_blob_is_manifest_blob_unknown(client):
    layer = await push_blob(client, REPO, b"layer")
    body = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": sha256(b"nope"), "size": 4},
            "layers": [{"mediaType": OCI_LAYER, "digest": layer, "size": 5}],
        }
    ).encode()
    assert_error(await put_manifest(client, REPO, "v1", body), 400, "MANIFEST_BLOB_UNKNOWN")
    assert_error(await client.get(f"/v2/{REPO}/manifests/v1"), 404, "MANIFEST_UNKNOWN")


async def test_missing_layer_blob_is_manifest_blob_unknown(client):
    config = await push_blob(client, REPO, b"{}")
    body = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": DOCKER_MANIFEST,
            "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "digest": config, "size": 2},
            "layers": [
                {"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip", "digest": sha256(b"x"), "size": 1}
            ],
        }
    ).encode()
    assert_error(await put_manifest(client, REPO, "v1", body, DOCKER_MANIFEST), 400, "MANIFEST_BLOB_UNKNOWN")


async def test_blob_in_another_repository_only_is_manifest_blob_unknown(client):
    _, body = await push_image(client, "manifests/elsewhere", "v1")
    assert_error(await put_manifest(client, REPO, "v1", body), 400, "MANIFEST_BLOB_UNKNOWN")


async def test_index_with_missing_child_is_manifest_unknown(client):
    """The model rejects an index whose child manifest is not in the repository with MANIFEST_UNKNOWN.
    (distribution-spec v1.1 "Push" says such rejections MUST use MANIFEST_BLOB_UNKNOWN; see the report.)"""
    digest, body = await push_image(client, REPO)
    missing = sha256(b"missing child")
    index = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_INDEX,
            "manifests": [
                {"mediaType": OCI_MANIFEST, "digest": digest, "size": len(body)},
                {"mediaType": OCI_MANIFEST, "digest": missing, "size": 10},
            ],
        }
    ).encode()
    r = await put_manifest(client, REPO, "idx", index, OCI_INDEX)
    assert r.status_code in (400, 404), r.text
    assert_error(r, r.status_code, "MANIFEST_UNKNOWN")
    assert_error(await client.get(f"/v2/{REPO}/manifests/idx"), 404, "MANIFEST_UNKNOWN")


async def test_digest_reference_not_matching_body_is_400(client):
    _, pushed = await push_image(client, REPO)
    body = json.dumps({**json.loads(pushed), "annotations": {"never": "pushed"}}).encode()
    wrong = sha256(body + b" ")
    r = await put_manifest(client, REPO, wrong, body)
    assert_error(r, 400, "DIGEST_INVALID")
    assert_error(await client.get(f"/v2/{REPO}/manifests/{wrong}"), 404, "MANIFEST_UNKNOWN")
    assert_error(await client.get(f"/v2/{REPO}/manifests/{sha256(body)}"), 404, "MANIFEST_UNKNOWN")


def _padded_manifest(config: str, size: int) -> bytes:
    head = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": EMPTY_CONFIG, "digest": config, "size": 2},
            "layers": [],
            "annotations": {"pad": ""},
        }
    ).encode()
    body = head.replace(b'"pad": ""', b'"pad": "' + b"x" * (size - len(head)) + b'"')
    assert len(body) == size
    return body


async def test_manifest_of_four_mib_is_accepted(client):
    config = await push_blob(client, REPO, b"{}")
    body = _padded_manifest(config, 4 * MiB)
    r = await put_manifest(client, REPO, "big", body)
    assert r.status_code == 201, r.text[:200]
    r = await client.get(f"/v2/{REPO}/manifests/big")
    assert r.status_code == 200
    assert r.content == body


async def test_manifest_over_four_mib_is_413(client):
    config = await push_blob(client, REPO, b"{}")
    body = _padded_manifest(config, 4 * MiB + 1)
    assert_error(await put_manifest(client, REPO, "toobig", body), 413)

    async def streamed():
        for i in range(0, len(body), 256 * 1024):
            yield body[i : i + 256 * 1024]

    r = await client.put(f"/v2/{REPO}/manifests/toobig", content=streamed(), headers={"Content-Type": OCI_MANIFEST})
    assert_error(r, 413)
    assert_error(await client.get(f"/v2/{REPO}/manifests/toobig"), 404, "MANIFEST_UNKNOWN")


# -- reads of missing manifests -------------------------------------------------------------------


async def test_unknown_manifest_is_404(client):
    await push_image(client, REPO, "v1")
    for reference in ("v2", sha256(b"unknown")):
        assert_error(await client.get(f"/v2/{REPO}/manifests/{reference}"), 404, "MANIFEST_UNKNOWN")
        assert_error(await client.head(f"/v2/{REPO}/manifests/{reference}"), 404)
    assert_error(await client.get("/v2/no/such/repo/manifests/v1"), 404)


async def test_manifest_is_visible_only_in_its_repository(client):
    digest, _ = await push_image(client, REPO, "v1")
    await push_image(client, "manifests/other", "v1")
    assert_error(await client.get(f"/v2/manifests/other/manifests/{digest}"), 404, "MANIFEST_UNKNOWN")


# -- deletes --------------------------------------------------------------------------------------


async def test_delete_by_digest_removes_manifest_and_its_tags(client):
    digest, _ = await push_image(client, REPO, "v1")
    other, _ = await push_image(client, REPO, "other")
    for tag in ("v1-alias", "latest"):
        r = await client.get(f"/v2/{REPO}/manifests/v1")
        assert (await put_manifest(client, REPO, tag, r.content)).status_code == 201
    r = await client.delete(f"/v2/{REPO}/manifests/{digest}")
    assert r.status_code == 202
    assert r.content == b""
    assert_error(await client.get(f"/v2/{REPO}/manifests/{digest}"), 404, "MANIFEST_UNKNOWN")
    for tag in ("v1", "v1-alias", "latest"):
        assert_error(await client.get(f"/v2/{REPO}/manifests/{tag}"), 404, "MANIFEST_UNKNOWN")
        assert_error(await client.head(f"/v2/{REPO}/manifests/{tag}"), 404)
    assert (await client.get(f"/v2/{REPO}/tags/list")).json()["tags"] == ["other"]
    assert (await client.get(f"/v2/{REPO}/manifests/{other}")).status_code == 200


async def test_delete_by_tag_untags_only(client):
    digest, body = await push_image(client, REPO, "v1")
    assert (await put_manifest(client, REPO, "v2", body)).status_code == 201
    r = await client.delete(f"/v2/{REPO}/manifests/v1")
    assert r.status_code == 202
    assert_error(await client.get(f"/v2/{REPO}/manifests/v1"), 404, "MANIFEST_UNKNOWN")
    r = await client.get(f"/v2/{REPO}/manifests/{digest}")
    assert r.status_code == 200
    assert r.content == body
    assert (await client.get(f"/v2/{REPO}/manifests/v2")).status_code == 200
    assert (await client.get(f"/v2/{REPO}/tags/list")).json()["tags"] == ["v2"]


async def test_delete_unknown_manifest_is_404(client):
    await push_image(client, REPO, "v1")
    assert_error(await client.delete(f"/v2/{REPO}/manifests/nope"), 404, "MANIFEST_UNKNOWN")
    assert_error(await client.delete(f"/v2/{REPO}/manifests/{sha256(b'nope')}"), 404, "MANIFEST_UNKNOWN")
    assert_error(await client.delete(f"/v2/no/such/repo/manifests/{sha256(b'nope')}"), 404)
    assert_error(await client.delete("/v2/no/such/repo/manifests/v1"), 404)


async def test_deleted_manifest_can_be_pushed_again(client):
    digest, body = await push_image(client, REPO, "v1")
    assert (await client.delete(f"/v2/{REPO}/manifests/{digest}")).status_code == 202
    r = await put_manifest(client, REPO, "v1", body)
    assert r.status_code == 201, r.text
    assert (await client.get(f"/v2/{REPO}/manifests/v1")).content == body


async def test_reads_follow_tag_moves_and_deletes(client):
    """Reads made before a change never mask it afterwards."""
    first, first_body = await push_image(client, REPO, "v1")
    second, second_body = await push_image(client, REPO)
    for _ in range(2):
        assert (await client.get(f"/v2/{REPO}/manifests/v1")).content == first_body
        assert (await client.head(f"/v2/{REPO}/manifests/v1")).headers["Docker-Content-Digest"] == first
    assert (await put_manifest(client, REPO, "v1", second_body)).status_code == 201
    r = await client.get(f"/v2/{REPO}/manifests/v1")
    assert r.content == second_body
    assert r.headers["Docker-Content-Digest"] == second
    assert (await client.head(f"/v2/{REPO}/manifests/v1")).headers["Docker-Content-Digest"] == second
    assert (await client.get(f"/v2/{REPO}/manifests/{second}")).status_code == 200
    assert (await client.delete(f"/v2/{REPO}/manifests/{second}")).status_code == 202
    assert_error(await client.get(f"/v2/{REPO}/manifests/v1"), 404, "MANIFEST_UNKNOWN")
    assert_error(await client.head(f"/v2/{REPO}/manifests/{second}"), 404)
    assert (await client.get(f"/v2/{REPO}/manifests/{first}")).content == first_body
    assert (await put_manifest(client, REPO, "v1", first_body)).status_code == 201
    assert (await client.get(f"/v2/{REPO}/manifests/v1")).headers["Docker-Content-Digest"] == first
    assert (await client.delete(f"/v2/{REPO}/manifests/v1")).status_code == 202
    assert_error(await client.get(f"/v2/{REPO}/manifests/v1"), 404, "MANIFEST_UNKNOWN")
    assert (await client.get(f"/v2/{REPO}/manifests/{first}")).status_code == 200


async def test_trailing_newline_is_not_a_valid_reference(client):
    _, body = await push_image(client, REPO, "v1")
    r = await put_manifest(client, REPO, "v2%0A", body)
    assert_error(r, 400)
    assert_error(await client.get(f"/v2/{REPO}/manifests/v1%0A"), 404)
    assert (await client.get(f"/v2/{REPO}/tags/list")).json()["tags"] == ["v1"]
    assert_error(await client.get(f"/v2/{REPO}/manifests/{sha256(body)}%0A"), 400, "DIGEST_INVALID")
