"""The fixtures of the OCI distribution-spec v1.1 conformance suite (conformance/setup.go),
rebuilt in Python: configs, manifests, chunked blobs and the referrer artifacts.

Every call of `build()` makes a fresh set (configs carry a random author, as in the suite),
serialised the way Go's `json.MarshalIndent(v, "", "\t")` does, including the unknown
`newUnspecifiedField` every descriptor carries and the inline `data` of config descriptors.
"""

from __future__ import annotations

import base64
import json
import os
import random
import string
from dataclasses import dataclass, field
from typing import Any

from tests.support.digests import sha256
from tests.support.media_types import OCI_CONFIG, OCI_INDEX, OCI_LAYER, OCI_MANIFEST

EMPTY_JSON_TYPE = "application/vnd.oci.empty.v1+json"
EMPTY_JSON_DIGEST = "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"
ARTIFACT_TYPE_A = "application/vnd.nhl.peanut.butter.bagel"
ARTIFACT_TYPE_B = "application/vnd.nba.strawberry.jam.croissant"
ARTIFACT_TYPE_INDEX = "application/vnd.food.stand"
ANNOTATION_KEY = "org.opencontainers.conformance.test"
TEST_TAG = "tagtest0"
NONEXISTENT_MANIFEST = ".INVALID_MANIFEST_NAME"
INVALID_MANIFEST = b"blablabla"
DUMMY_DIGEST = sha256(b"hello world")
# The codes the suite accepts as "OCI-conforming" (setup.go errorCodes).
CONFORMANCE_ERROR_CODES = {
    "BLOB_UNKNOWN",
    "BLOB_UPLOAD_INVALID",
    "BLOB_UPLOAD_UNKNOWN",
    "DIGEST_INVALID",
    "MANIFEST_BLOB_UNKNOWN",
    "MANIFEST_INVALID",
    "MANIFEST_UNKNOWN",
    "MANIFEST_UNVERIFIED",
    "NAME_INVALID",
    "NAME_UNKNOWN",
    "SIZE_INVALID",
    "TAG_INVALID",
    "UNAUTHORIZED",
    "DENIED",
    "UNSUPPORTED",
}

# A gzipped tarball holding one small text file: the suite's layer blob.
LAYER_BASE64 = (
    "H4sIAAAAAAAAA+3OQQrCMBCF4a49xXgBSUnaHMCTRBptQRNpp6i3t0UEV7oqIv7fYgbmzeJpHHSjVy0"
    "WZCa1c/MufWVe94N3RWlrZ72x3k/30nhbFWKWLPU0Dhp6keJ8im//PuU/6pZH2WVtYx8b0Sz7LjWSR5VLG6YRBumSzOlGtjkd+qD"
    "jMWiX07Befbs7AAAAAAAAAAAAAAAAAPyzO34MnqoAKAAA"
)


@dataclass(frozen=True)
class Blob:
    content: bytes
    digest: str

    @property
    def length(self) -> str:
        return str(len(self.content))


def _blob(content: bytes) -> Blob:
    return Blob(content, sha256(content))


def marshal(value: Any) -> bytes:
    """Go's json.MarshalIndent(value, "", "\\t")."""
    return json.dumps(value, indent="\t").encode()


def desc(media_type: str, blob: Blob, **extra: Any) -> dict[str, Any]:
    """A descriptor as the suite's Go type serialises it (newUnspecifiedField has no omitempty)."""
    d: dict[str, Any] = {"mediaType": media_type, "digest": blob.digest, "size": len(blob.content)}
    d.update(extra)
    d.setdefault("newUnspecifiedField", None)
    return d


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _random_author(n: int = 16) -> str:
    letters = string.digits + string.ascii_letters + "-"
    return "".join(random.choice(letters) for _ in range(n))


@dataclass
class ConformanceData:
    configs: list[Blob]
    layer: Blob
    manifests: list[Blob]
    empty_json: Blob
    empty_layer_manifest: Blob  # layers: [] (v1.1 setup)
    empty_layer_json_manifest: Blob  # layers: [empty JSON descriptor] (newer setup)
    empty_config_manifest: Blob  # config is the empty JSON descriptor
    blob_a: Blob  # 42 random bytes
    blob_b: Blob  # 42 random bytes, uploaded in two chunks
    blob_b_chunk1: bytes
    blob_b_chunk2: bytes
    ref_blob_a: Blob
    ref_blob_b: Blob
    config_type_manifest: Blob  # config.mediaType = artifact type A, no subject
    artifact_type_manifest: Blob  # artifactType A, empty JSON config, no subject
    refs_a_config: Blob
    refs_b_config: Blob
    refs_a_layer: Blob
    refs_b_layer: Blob
    refs_c_layer: Blob  # subject manifests[3], which is never pushed
    refs_index: Blob  # index artifact with subject manifests[4]
    annotations: dict[str, str] = field(default_factory=dict)  # referrer digest -> annotation value

    @property
    def chunk1_range(self) -> str:
        return f"0-{len(self.blob_b_chunk1) - 1}"

    @property
    def chunk2_range(self) -> str:
        return f"{len(self.blob_b_chunk1)}-{len(self.blob_b.content) - 1}"

    def index_of(
        self,
        children: list[Blob],
        *,
        subject: Blob | None = None,
        annotation: str = "test index",
        child_type: str = OCI_MANIFEST,
    ) -> Blob:
        """An OCI index artifact (artifactType application/vnd.food.stand) listing `children`."""
        doc: dict[str, Any] = {
            "schemaVersion": 2,
            "mediaType": OCI_INDEX,
            "artifactType": ARTIFACT_TYPE_INDEX,
            "manifests": [desc(child_type, c) for c in children],
        }
        if subject is not None:
            doc["subject"] = desc(OCI_MANIFEST, subject)
        doc["annotations"] = {ANNOTATION_KEY: annotation}
        return _blob(marshal(doc))


def build(chunked_size: int = 42) -> ConformanceData:
    configs = []
    for _ in range(5):  # one per workflow, as the suite does
        image = {
            "author": _random_author(),
            "architecture": "amd64",
            "os": "linux",
            "rootfs": {"type": "layers", "diff_ids": []},
        }
        configs.append(_blob(marshal(image)))
    layer = _blob(base64.b64decode(LAYER_BASE64))
    layers = [desc(OCI_LAYER, layer)]

    def config_desc(config: Blob) -> dict[str, Any]:
        return desc(OCI_CONFIG, config, data=_b64(config.content), newUnspecifiedField=_b64(b"hello world"))

    manifests = [
        _blob(marshal({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": config_desc(c), "layers": layers}))
        for c in configs
    ]
    empty_json = _blob(b"{}")
    empty_desc = desc(EMPTY_JSON_TYPE, empty_json)
    empty_layer_manifest = _blob(marshal({"schemaVersion": 2, "config": config_desc(configs[1]), "layers": []}))
    empty_layer_json_manifest = _blob(
        marshal(
            {"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": config_desc(configs[1]), "layers": [empty_desc]}
        )
    )
    empty_config_manifest = _blob(
        marshal({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": empty_desc, "layers": layers})
    )
    blob_a = _blob(os.urandom(42))
    blob_b = _blob(os.urandom(chunked_size))
    split = chunked_size // 2 + 1
    ref_blob_a = _blob(b"NHL Peanut Butter on my NHL bagel")
    ref_blob_b = _blob(b"NBA Strawberry Jam on my NBA croissant")

    config_type_manifest = _blob(
        marshal(
            {
                "schemaVersion": 2,
                "mediaType": OCI_MANIFEST,
                "config": desc(ARTIFACT_TYPE_A, ref_blob_a),
                "layers": layers,
            }
        )
    )
    artifact_type_manifest = _blob(
        marshal(
            {
                "schemaVersion": 2,
                "mediaType": OCI_MANIFEST,
                "artifactType": ARTIFACT_TYPE_A,
                "config": empty_desc,
                "layers": [desc(ARTIFACT_TYPE_A, ref_blob_a)],
            }
        )
    )

    annotations: dict[str, str] = {}

    def referrer(
        subject: Blob,
        *,
        config: dict[str, Any],
        layer_descs: list[dict[str, Any]],
        artifact_type: str | None = None,
        annotation: str | None = None,
    ) -> Blob:
        doc: dict[str, Any] = {"schemaVersion": 2, "mediaType": OCI_MANIFEST}
        if artifact_type:
            doc["artifactType"] = artifact_type
        doc["config"] = config
        doc["layers"] = layer_descs
        doc["subject"] = desc(OCI_MANIFEST, subject)
        if annotation is not None:
            doc["annotations"] = {ANNOTATION_KEY: annotation}
        blob = _blob(marshal(doc))
        if annotation is not None:
            annotations[blob.digest] = annotation
        return blob

    subject = manifests[4]
    refs_a_config = referrer(
        subject, config=desc(ARTIFACT_TYPE_A, ref_blob_a), layer_descs=[empty_desc], annotation="test config a"
    )
    refs_b_config = referrer(
        subject, config=desc(ARTIFACT_TYPE_B, ref_blob_b), layer_descs=[empty_desc], annotation="test config b"
    )
    refs_a_layer = referrer(
        subject,
        config=empty_desc,
        layer_descs=[desc(ARTIFACT_TYPE_A, ref_blob_a)],
        artifact_type=ARTIFACT_TYPE_A,
        annotation="test layer a",
    )
    refs_b_layer = referrer(
        subject,
        config=empty_desc,
        layer_descs=[desc(ARTIFACT_TYPE_B, ref_blob_b)],
        artifact_type=ARTIFACT_TYPE_B,
        annotation="test layer b",
    )
    refs_c_layer = referrer(
        manifests[3],
        config=empty_desc,
        layer_descs=[desc(ARTIFACT_TYPE_B, ref_blob_b)],
        artifact_type=ARTIFACT_TYPE_B,
    )
    data = ConformanceData(
        configs=configs,
        layer=layer,
        manifests=manifests,
        empty_json=empty_json,
        empty_layer_manifest=empty_layer_manifest,
        empty_layer_json_manifest=empty_layer_json_manifest,
        empty_config_manifest=empty_config_manifest,
        blob_a=blob_a,
        blob_b=blob_b,
        blob_b_chunk1=blob_b.content[:split],
        blob_b_chunk2=blob_b.content[split:],
        ref_blob_a=ref_blob_a,
        ref_blob_b=ref_blob_b,
        config_type_manifest=config_type_manifest,
        artifact_type_manifest=artifact_type_manifest,
        refs_a_config=refs_a_config,
        refs_b_config=refs_b_config,
        refs_a_layer=refs_a_layer,
        refs_b_layer=refs_b_layer,
        refs_c_layer=refs_c_layer,
        refs_index=_blob(b""),  # set below
        annotations=annotations,
    )
    data.refs_index = data.index_of([refs_a_config, refs_a_layer], subject=subject)
    annotations[data.refs_index.digest] = "test index"
    return data
