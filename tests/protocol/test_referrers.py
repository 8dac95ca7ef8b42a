"""GET /v2/<name>/referrers/<digest> and the OCI-Subject header on manifest PUT."""

from __future__ import annotations

import json
from typing import Any

from tests.support.digests import sha256
from tests.support.http import assert_error, descriptor, push_blob, push_image, put_manifest
from tests.support.media_types import EMPTY_CONFIG, OCI_INDEX, OCI_MANIFEST

REPO = "referrers/repo"
SBOM = "application/vnd.example.sbom.v1"
SIGNATURE = "application/vnd.example.signature.v1"
EMPTY_INDEX = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": []}


async def push_referrer(
    client,
    subject: str,
    *,
    artifact_type: str | None = None,
    config_type: str = EMPTY_CONFIG,
    annotations: dict[str, str] | None = None,
    repo: str = REPO,
    reference: str | None = None,
) -> tuple[str, bytes]:
    config = b"{}" if config_type == EMPTY_CONFIG else json.dumps({"kind": config_type}).encode()
    await push_blob(client, repo, config)
    payload = json.dumps({"for": subject, "type": artifact_type, "a": annotations}).encode()
    await push_blob(client, repo, payload)
    doc: dict[str, Any] = {"schemaVersion": 2, "mediaType": OCI_MANIFEST}
    if artifact_type:
        doc["artifactType"] = artifact_type
    doc["config"] = descriptor(config_type, config)
    doc["layers"] = [descriptor("application/vnd.example.data", payload)]
    doc["subject"] = {"mediaType": OCI_MANIFEST, "digest": subject, "size": 123}
    if annotations:
        doc["annotations"] = annotations
    body = json.dumps(doc).encode()
    digest = sha256(body)
    r = await put_manifest(client, repo, reference or digest, body)
    assert r.status_code == 201, r.text
    assert r.headers["OCI-Subject"] == subject
    return digest, body


async def referrers(client, subject: str, repo: str = REPO, **params) -> tuple[list[dict], Any]:
    r = await client.get(f"/v2/{repo}/referrers/{subject}", params=params or None)
    assert r.status_code == 200, r.text
    assert r.headers["Content-Type"] == OCI_INDEX
    body = r.json()
    assert body["schemaVersion"] == 2
    assert body["mediaType"] == OCI_INDEX
    assert isinstance(body["manifests"], list)
    return body["manifests"], r


async def test_no_referrers_is_an_empty_index(client):
    subject, _ = await push_image(client, REPO, "v1")
    r = await client.get(f"/v2/{REPO}/referrers/{subject}")
    assert r.status_code == 200
    assert r.headers["Content-Type"] == OCI_INDEX
    assert r.json() == EMPTY_INDEX
    assert "OCI-Filters-Applied" not in r.headers


async def test_unknown_subject_and_unknown_repository_give_empty_index(client):
    await push_image(client, REPO, "v1")
    for repo in (REPO, "referrers/never/pushed"):
        manifests, _ = await referrers(client, sha256(b"unknown subject"), repo)
        assert manifests == []


async def test_manifest_without_subject_has_no_oci_subject_header(client):
    config = await push_blob(client, REPO, b"{}")
    body = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": EMPTY_CONFIG, "digest": config, "size": 2},
            "layers": [],
        }
    ).encode()
    r = await put_manifest(client, REPO, "plain", body)
    assert r.status_code == 201
    assert "OCI-Subject" not in r.headers


async def test_referrer_descriptors(client):
    subject, _ = await push_image(client, REPO, "v1")
    sbom, sbom_body = await push_referrer(
        client, subject, artifact_type=SBOM, annotations={"org.example.format": "spdx", "created": "now"}
    )
    sig, sig_body = await push_referrer(client, subject, config_type=SIGNATURE)  # artifact type from the config
    manifests, _ = await referrers(client, subject)
    by_digest = {m["digest"]: m for m in manifests}
    assert set(by_digest) == {sbom, sig}
    assert by_digest[sbom] == {
        "mediaType": OCI_MANIFEST,
        "digest": sbom,
        "size": len(sbom_body),
        "artifactType": SBOM,
        "annotations": {"org.example.format": "spdx", "created": "now"},
    }
    assert by_digest[sig]["mediaType"] == OCI_MANIFEST
    assert by_digest[sig]["size"] == len(sig_body)
    assert by_digest[sig]["artifactType"] == SIGNATURE
    assert not by_digest[sig].get("annotations")


async def test_index_referrer(client):
    subject, _ = await push_image(client, REPO, "v1")
    child, child_body = await push_image(client, REPO)
    for artifact_type in (None, "application/vnd.example.bundle"):
        doc: dict[str, Any] = {"schemaVersion": 2, "mediaType": OCI_INDEX}
        if artifact_type:
            doc["artifactType"] = artifact_type
        doc["manifests"] = [{"mediaType": OCI_MANIFEST, "digest": child, "size": len(child_body)}]
        doc["subject"] = {"mediaType": OCI_MANIFEST, "digest": subject, "size": 1}
        doc["annotations"] = {"kind": str(artifact_type)}
        body = json.dumps(doc).encode()
        r = await put_manifest(client, REPO, sha256(body), body, OCI_INDEX)
        assert r.status_code == 201, r.text
        assert r.headers["OCI-Subject"] == subject
        manifests, _ = await referrers(client, subject)
        entry = next(m for m in manifests if m["digest"] == sha256(body))
        assert entry["mediaType"] == OCI_INDEX
        assert entry["size"] == len(body)
        assert entry["annotations"] == {"kind": str(artifact_type)}
        if artifact_type is None:
            assert "artifactType" not in entry  # spec: omitted for an index without artifactType
        else:
            assert entry["artifactType"] == artifact_type


async def test_artifact_type_filter(client):
    subject, _ = await push_image(client, REPO, "v1")
    sbom1, _ = await push_referrer(client, subject, artifact_type=SBOM, annotations={"n": "1"})
    sbom2, _ = await push_referrer(client, subject, artifact_type=SBOM, annotations={"n": "2"})
    await push_referrer(client, subject, artifact_type=SIGNATURE)
    manifests, r = await referrers(client, subject, artifactType=SBOM)
    assert r.headers["OCI-Filters-Applied"] == "artifactType"
    assert {m["digest"] for m in manifests} == {sbom1, sbom2}
    assert all(m["artifactType"] == SBOM for m in manifests)
    manifests, r = await referrers(client, subject, artifactType="application/vnd.nothing")
    assert manifests == []
    assert r.headers["OCI-Filters-Applied"] == "artifactType"
    manifests, r = await referrers(client, subject)
    assert len(manifests) == 3
    assert "OCI-Filters-Applied" not in r.headers


async def test_referrer_pushed_before_subject_and_by_tag(client):
    digest, _ = await push_image(client, "referrers/staging", "v1")  # the subject, not yet in REPO
    ref, _ = await push_referrer(client, digest, artifact_type=SBOM, reference="sbom-tag")
    manifests, _ = await referrers(client, digest)
    assert [m["digest"] for m in manifests] == [ref]
    await push_image(client, REPO, "v1")  # unrelated image; the subject itself is still missing
    assert_error(await client.get(f"/v2/{REPO}/manifests/{digest}"), 404, "MANIFEST_UNKNOWN")
    assert (await client.get(f"/v2/{REPO}/manifests/sbom-tag")).status_code == 200


async def test_deleted_referrer_disappears(client):
    subject, _ = await push_image(client, REPO, "v1")
    keep, _ = await push_referrer(client, subject, artifact_type=SBOM)
    gone, _ = await push_referrer(client, subject, artifact_type=SIGNATURE)
    assert (await client.delete(f"/v2/{REPO}/manifests/{gone}")).status_code == 202
    manifests, _ = await referrers(client, subject)
    assert [m["digest"] for m in manifests] == [keep]


async def test_referrers_are_per_repository(client):
    subject, _ = await push_image(client, REPO, "v1")
    await push_referrer(client, subject, artifact_type=SBOM)
    other = "referrers/other"
    await push_image(client, other, "v1")
    manifests, _ = await referrers(client, subject, other)
    assert manifests == []


async def test_invalid_digest_is_400(client):
    await push_image(client, REPO, "v1")
    for digest in ("notadigest", "sha256:xyz", "sha256:" + "A" * 64, "sha256:", "md5:abc"):
        assert_error(await client.get(f"/v2/{REPO}/referrers/{digest}"), 400)


async def test_invalid_name_is_400(client):
    assert_error(await client.get(f"/v2/Bad/Name/referrers/{sha256(b'x')}"), 400, "NAME_INVALID")


async def test_referrer_pushed_twice_is_listed_once(client):
    subject, _ = await push_image(client, REPO, "v1")
    digest, body = await push_referrer(client, subject, artifact_type=SBOM, reference="sig1")
    for reference in (digest, "sig2"):
        r = await put_manifest(client, REPO, reference, body)
        assert r.status_code == 201
        assert r.headers["OCI-Subject"] == subject
    manifests, _ = await referrers(client, subject)
    assert [m["digest"] for m in manifests] == [digest]
    # Untagging leaves the referrer (still stored by digest).
    assert (await client.delete(f"/v2/{REPO}/manifests/sig1")).status_code == 202
    manifests, _ = await referrers(client, subject)
    assert [m["digest"] for m in manifests] == [digest]
