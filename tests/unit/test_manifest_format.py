"""parse_manifest: what it accepts, what it extracts and what it rejects."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from registry.errors import ManifestInvalid
from registry.model.manifest_format import (
    DOCKER_LIST,
    DOCKER_MANIFEST,
    OCI_INDEX,
    OCI_MANIFEST,
    parse_manifest,
)

CONFIG = "sha256:" + "c" * 64
LAYER1 = "sha256:" + "1" * 64
LAYER2 = "sha256:" + "2" * 64
CHILD1 = "sha256:" + "a" * 64
CHILD2 = "sha256:" + "b" * 64
SUBJECT = "sha256:" + "5" * 64
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
FOREIGN = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"


def desc(media_type: str, digest: str, size: int = 10, **extra: Any) -> dict[str, Any]:
    return {"mediaType": media_type, "digest": digest, "size": size, **extra}


def oci_manifest(**extra: Any) -> dict[str, Any]:
    return {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": desc(OCI_CONFIG, CONFIG),
        "layers": [desc(OCI_LAYER, LAYER1), desc(OCI_LAYER, LAYER2)],
        **extra,
    }


def docker_manifest() -> dict[str, Any]:
    return {
        "schemaVersion": 2,
        "mediaType": DOCKER_MANIFEST,
        "config": desc("application/vnd.docker.container.image.v1+json", CONFIG),
        "layers": [desc("application/vnd.docker.image.rootfs.diff.tar.gzip", LAYER1)],
    }


def index(media_type: str = OCI_INDEX, **extra: Any) -> dict[str, Any]:
    return {
        "schemaVersion": 2,
        "mediaType": media_type,
        "manifests": [
            desc(OCI_MANIFEST, CHILD1, platform={"os": "linux", "architecture": "amd64"}),
            desc(OCI_MANIFEST, CHILD2, platform={"os": "linux", "architecture": "arm64"}),
        ],
        **extra,
    }


def parse(doc: Any, content_type: str | None = None):
    return parse_manifest(json.dumps(doc).encode(), content_type)


# -- accepted ---------------------------------------------------------------------------------


def test_oci_image_manifest():
    parsed = parse(oci_manifest(annotations={"a": "b"}), OCI_MANIFEST)
    assert parsed.media_type == OCI_MANIFEST
    assert parsed.blobs == [CONFIG, LAYER1, LAYER2]
    assert parsed.children == []
    assert parsed.config_digest == CONFIG
    assert parsed.subject is None
    assert parsed.artifact_type == OCI_CONFIG  # falls back to the config media type
    assert parsed.annotations == {"a": "b"}
    assert [layer.digest for layer in parsed.layers] == [LAYER1, LAYER2]


def test_docker_schema2_manifest():
    parsed = parse(docker_manifest(), DOCKER_MANIFEST)
    assert parsed.media_type == DOCKER_MANIFEST
    assert parsed.blobs == [CONFIG, LAYER1]


@pytest.mark.parametrize("media_type", [OCI_INDEX, DOCKER_LIST])
def test_indexes(media_type):
    parsed = parse(index(media_type), media_type)
    assert parsed.media_type == media_type
    assert parsed.blobs == []
    assert parsed.children == [CHILD1, CHILD2]
    assert parsed.config_digest is None


def test_duplicates_are_listed_once():
    doc = oci_manifest()
    doc["layers"] = [desc(OCI_LAYER, LAYER1), desc(OCI_LAYER, LAYER1), desc(OCI_LAYER, CONFIG)]
    assert parse(doc).blobs == [CONFIG, LAYER1]
    doc = index()
    doc["manifests"].append(desc(OCI_MANIFEST, CHILD1))
    assert parse(doc).children == [CHILD1, CHILD2]


def test_media_type_from_header_when_body_has_none():
    doc = oci_manifest()
    del doc["mediaType"]
    assert parse(doc, DOCKER_MANIFEST).media_type == DOCKER_MANIFEST
    assert parse(doc, OCI_MANIFEST).media_type == OCI_MANIFEST


@pytest.mark.parametrize("content_type", [None, "application/json", ""])
def test_media_type_from_shape(content_type):
    doc = oci_manifest()
    del doc["mediaType"]
    assert parse(doc, content_type).media_type == OCI_MANIFEST
    doc = index()
    del doc["mediaType"]
    assert parse(doc, content_type).media_type == OCI_INDEX


@pytest.mark.parametrize(
    "content_type",
    [
        None,
        "application/json",
        OCI_MANIFEST,
        f"{OCI_MANIFEST}; charset=utf-8",
        OCI_MANIFEST.upper(),
        f" {OCI_MANIFEST} ",
    ],
)
def test_content_type_variants(content_type):
    assert parse(oci_manifest(), content_type).media_type == OCI_MANIFEST


def test_artifact_manifest_with_subject():
    doc = oci_manifest(
        artifactType="application/vnd.example.sbom",
        subject=desc(OCI_MANIFEST, SUBJECT, 123),
    )
    doc["config"] = desc("application/vnd.oci.empty.v1+json", CONFIG, 2)
    doc["layers"] = []
    parsed = parse(doc)
    assert parsed.artifact_type == "application/vnd.example.sbom"
    assert parsed.subject == SUBJECT
    assert parsed.blobs == [CONFIG]


def test_index_with_subject_and_artifact_type():
    parsed = parse(index(subject=desc(OCI_MANIFEST, SUBJECT), artifactType="application/x"))
    assert parsed.subject == SUBJECT
    assert parsed.artifact_type == "application/x"


def test_null_subject_is_no_subject():
    assert parse(oci_manifest(subject=None)).subject is None


def test_foreign_layers_with_urls_are_not_required():
    doc = docker_manifest()
    doc["layers"].append(desc(FOREIGN, LAYER2, urls=["https://example.com/layer"]))
    parsed = parse(doc)
    assert parsed.blobs == [CONFIG, LAYER1]
    assert len(parsed.layers) == 2


def test_foreign_layer_without_urls_is_required():
    doc = docker_manifest()
    doc["layers"].append(desc(FOREIGN, LAYER2))
    assert parse(doc).blobs == [CONFIG, LAYER1, LAYER2]


def test_oci_manifest_without_layers():
    doc = oci_manifest()
    doc["layers"] = []
    assert parse(doc).blobs == [CONFIG]
    del doc["layers"]
    assert parse(doc).blobs == [CONFIG]


def test_empty_index():
    doc = index()
    doc["manifests"] = []
    assert parse(doc).children == []


def test_sha512_descriptors():
    doc = oci_manifest()
    doc["layers"] = [desc(OCI_LAYER, "sha512:" + "e" * 128)]
    assert parse(doc).blobs == [CONFIG, "sha512:" + "e" * 128]


def test_unknown_fields_are_kept_out_of_the_way():
    doc = oci_manifest(futureField={"x": 1})
    doc["config"]["data"] = "e30="
    doc["layers"][0]["annotations"] = {"k": "v"}
    assert parse(doc).blobs == [CONFIG, LAYER1, LAYER2]


# -- rejected ---------------------------------------------------------------------------------


def _mutations() -> list[tuple[str, Any, str | None]]:
    """(case id, document or raw bytes, content type)."""
    cases: list[tuple[str, Any, str | None]] = []

    def add(case_id: str, change, content_type: str | None = None, base=oci_manifest) -> None:
        doc = copy.deepcopy(base())
        result = change(doc)
        cases.append((case_id, doc if result is None else result, content_type))

    add("not-json", lambda d: b"{not json")
    add("not-utf8", lambda d: b'{"schemaVersion": 2, "x": "\xff\xfe"}')
    add("empty-body", lambda d: b"")
    add("array", lambda d: [d])
    add("string", lambda d: "manifest")
    add("null", lambda d: b"null")
    add("schema-version-1", lambda d: d.update(schemaVersion=1))
    add("schema-version-missing", lambda d: d.pop("schemaVersion") and None)
    add("schema-version-string", lambda d: d.update(schemaVersion="2"))
    add("schema1-type", lambda d: d.update(mediaType="application/vnd.docker.distribution.manifest.v1+json"))
    add("schema1-signed", lambda d: d.update(mediaType="application/vnd.docker.distribution.manifest.v1+prettyjws"))
    add("schema1-header", lambda d: d.pop("mediaType") and None, "application/vnd.docker.distribution.manifest.v1+json")
    add("unsupported-type", lambda d: d.update(mediaType="application/vnd.example+json"))
    add("unsupported-header", lambda d: d.pop("mediaType") and None, "text/plain")
    add("media-type-not-string", lambda d: d.update(mediaType=5))
    add("header-body-mismatch", lambda d: None, DOCKER_MANIFEST)
    add("config-missing", lambda d: d.pop("config") and None)
    add("config-not-object", lambda d: d.update(config="sha256:x"))
    add("config-no-media-type", lambda d: d["config"].pop("mediaType") and None)
    add("config-empty-media-type", lambda d: d["config"].update(mediaType=""))
    add("config-digest-missing", lambda d: d["config"].pop("digest") and None)
    add("config-digest-invalid", lambda d: d["config"].update(digest="sha256:1234"))
    add("config-digest-uppercase", lambda d: d["config"].update(digest="sha256:" + "C" * 64))
    add("config-digest-md5", lambda d: d["config"].update(digest="md5:" + "c" * 32))
    add("config-digest-not-string", lambda d: d["config"].update(digest=123))
    add("size-missing", lambda d: d["config"].pop("size") and None)
    add("size-negative", lambda d: d["config"].update(size=-1))
    add("size-string", lambda d: d["config"].update(size="10"))
    add("size-float", lambda d: d["config"].update(size=1.5))
    add("size-bool", lambda d: d["config"].update(size=True))
    add("layers-not-list", lambda d: d.update(layers={"a": 1}))
    add("layer-not-object", lambda d: d["layers"].append("sha256:" + "1" * 64))
    add("layer-bad-digest", lambda d: d["layers"][0].update(digest="sha256:../../etc/passwd"))
    add("urls-not-list", lambda d: d["layers"][0].update(urls="https://x"))
    add("urls-not-strings", lambda d: d["layers"][0].update(urls=[1]))
    add("image-with-manifests", lambda d: d.update(manifests=[]))
    add("annotations-not-object", lambda d: d.update(annotations=["a"]))
    add("annotation-value-not-string", lambda d: d.update(annotations={"a": 1}))
    add("artifact-type-empty", lambda d: d.update(artifactType=""))
    add("artifact-type-not-string", lambda d: d.update(artifactType=7))
    add("subject-not-descriptor", lambda d: d.update(subject="sha256:" + "5" * 64))
    add("subject-bad-digest", lambda d: d.update(subject=desc(OCI_MANIFEST, "sha256:5")))
    add("docker-without-layers", lambda d: d.update(layers=[]), None, docker_manifest)
    add("docker-layers-missing", lambda d: d.pop("layers") and None, None, docker_manifest)
    add("index-with-layers", lambda d: d.update(layers=[]), None, index)
    add("index-with-config", lambda d: d.update(config=desc(OCI_CONFIG, CONFIG)), None, index)
    add("index-manifests-not-list", lambda d: d.update(manifests={}), None, index)
    add("index-manifests-missing", lambda d: d.pop("manifests") and None, OCI_INDEX, index)
    add("index-entry-bad", lambda d: d["manifests"].append({"digest": CHILD1}), None, index)
    add("index-header-mismatch", lambda d: None, OCI_MANIFEST, index)
    return cases


MUTATIONS = _mutations()


@pytest.mark.parametrize(("doc", "content_type"), [c[1:] for c in MUTATIONS], ids=[c[0] for c in MUTATIONS])
def test_rejected(doc, content_type):
    content = doc if isinstance(doc, bytes) else json.dumps(doc).encode()
    with pytest.raises(ManifestInvalid) as e:
        parse_manifest(content, content_type)
    assert e.value.code == "MANIFEST_INVALID"
    assert e.value.status == 400
    assert e.value.message


def test_mismatch_detail_names_both_types():
    with pytest.raises(ManifestInvalid) as e:
        parse(oci_manifest(), DOCKER_MANIFEST)
    assert e.value.detail == {"contentType": DOCKER_MANIFEST, "mediaType": OCI_MANIFEST}


def test_error_names_the_bad_field():
    doc = oci_manifest()
    doc["layers"][1]["size"] = -5
    with pytest.raises(ManifestInvalid, match=r"layers\[1\]\.size"):
        parse(doc)
