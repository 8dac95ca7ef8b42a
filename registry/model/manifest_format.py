"""Parsing and validation of manifest documents (Docker schema 2, Docker manifest
list, OCI image manifest, OCI image index, and artifacts built on them)."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from registry.errors import ManifestInvalid
from registry.names import validate_digest

DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_SCHEMA1 = (
    "application/vnd.docker.distribution.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v1+prettyjws",
)

IMAGE_TYPES = (DOCKER_MANIFEST, OCI_MANIFEST)
INDEX_TYPES = (DOCKER_LIST, OCI_INDEX)
SUPPORTED = IMAGE_TYPES + INDEX_TYPES

# RFC 6838: type and subtype of at most 127 characters each (parameters are not allowed here).
MEDIA_TYPE_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}/[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}")

# Layers that clients fetch from elsewhere (their `urls`); they need not be in the registry.
FOREIGN_LAYER_TYPES = (
    "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
    "application/vnd.oci.image.layer.nondistributable.v1.tar",
    "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
    "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd",
)


@dataclass
class Descriptor:
    media_type: str
    digest: str
    size: int
    urls: list[str] = field(default_factory=list)


@dataclass
class ParsedManifest:
    media_type: str
    blobs: list[str]  # config and layers that must be in the repository
    children: list[str]  # manifests an index references
    config_digest: str | None
    subject: str | None
    artifact_type: str | None  # effective: artifactType, else the config media type
    annotations: dict[str, str] | None
    layers: list[Descriptor] = field(default_factory=list)


def _media_type_of(header: str | None) -> str | None:
    if not header:
        return None
    return header.split(";", 1)[0].strip().lower() or None


def _descriptor(value: Any, where: str) -> Descriptor:
    if not isinstance(value, dict):
        raise ManifestInvalid(f"{where} must be a descriptor object")
    media_type = value.get("mediaType")
    digest = value.get("digest")
    size = value.get("size")
    if not isinstance(media_type, str) or not MEDIA_TYPE_RE.fullmatch(media_type):
        raise ManifestInvalid(f"{where}.mediaType must be a media type (type/subtype, RFC 6838)")
    if not isinstance(digest, str):
        raise ManifestInvalid(f"{where}.digest must be a string")
    try:
        validate_digest(digest)
    except Exception:
        raise ManifestInvalid(f"{where}.digest {digest[:100]!r} is not a valid digest") from None
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise ManifestInvalid(f"{where}.size must be a non-negative integer")
    urls = value.get("urls") or []
    if not isinstance(urls, list) or not all(isinstance(u, str) for u in urls):
        raise ManifestInvalid(f"{where}.urls must be a list of strings")
    return Descriptor(media_type, digest, size, urls)


def _annotations(doc: dict[str, Any]) -> dict[str, str] | None:
    value = doc.get("annotations")
    if value is None:
        return None
    if not isinstance(value, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
        raise ManifestInvalid("annotations must map strings to strings")
    return value


def parse_manifest(content: bytes, content_type: str | None) -> ParsedManifest:
    try:
        doc = json.loads(content)
    except (ValueError, UnicodeDecodeError) as e:
        raise ManifestInvalid(f"manifest is not valid JSON: {e}") from None
    except RecursionError:
        raise ManifestInvalid("manifest JSON is nested too deeply") from None
    if not isinstance(doc, dict):
        raise ManifestInvalid("manifest must be a JSON object")
    header_type = _media_type_of(content_type)
    body_type = doc.get("mediaType")
    if body_type is not None and not isinstance(body_type, str):
        raise ManifestInvalid("mediaType must be a string")
    if body_type and header_type and body_type != header_type and header_type != "application/json":
        raise ManifestInvalid(
            f"Content-Type {header_type} does not match the manifest's mediaType {body_type}",
            detail={"contentType": header_type, "mediaType": body_type},
        )
    media_type = body_type or (header_type if header_type != "application/json" else None)
    if media_type is None:
        # OCI allows documents without mediaType; tell them apart by shape.
        media_type = OCI_INDEX if "manifests" in doc else OCI_MANIFEST
    if media_type in DOCKER_SCHEMA1:
        raise ManifestInvalid("Docker schema 1 manifests are not supported; push schema 2 or OCI")
    if media_type not in SUPPORTED:
        raise ManifestInvalid(f"unsupported manifest media type {media_type!r}", detail={"supported": list(SUPPORTED)})
    if doc.get("schemaVersion") != 2:
        raise ManifestInvalid("schemaVersion must be 2")

    subject = None
    if "subject" in doc and doc["subject"] is not None:
        subject = _descriptor(doc["subject"], "subject").digest
    artifact_type = doc.get("artifactType")
    if artifact_type is not None and (not isinstance(artifact_type, str) or not MEDIA_TYPE_RE.fullmatch(artifact_type)):
        raise ManifestInvalid("artifactType must be a media type (type/subtype, RFC 6838)")
    annotations = _annotations(doc)

    if media_type in IMAGE_TYPES:
        if "manifests" in doc:
            raise ManifestInvalid("an image manifest must not contain manifests")
        config = _descriptor(doc.get("config"), "config")
        layers_value = doc.get("layers", [])
        if not isinstance(layers_value, list):
            raise ManifestInvalid("layers must be a list")
        layers = [_descriptor(layer, f"layers[{i}]") for i, layer in enumerate(layers_value)]
        if media_type == DOCKER_MANIFEST and not layers:
            raise ManifestInvalid("a Docker schema 2 manifest needs at least one layer")
        required = [config.digest] + [
            layer.digest for layer in layers if not (layer.media_type in FOREIGN_LAYER_TYPES and layer.urls)
        ]
        return ParsedManifest(
            media_type=media_type,
            blobs=list(dict.fromkeys(required)),
            children=[],
            config_digest=config.digest,
            subject=subject,
            artifact_type=artifact_type or config.media_type,
            annotations=annotations,
            layers=layers,
        )

    if "layers" in doc or "config" in doc:
        raise ManifestInvalid("an index must not contain config or layers")
    entries = doc.get("manifests")
    if not isinstance(entries, list):
        raise ManifestInvalid("manifests must be a list")
    children = [_descriptor(m, f"manifests[{i}]") for i, m in enumerate(entries)]
    return ParsedManifest(
        media_type=media_type,
        blobs=[],
        children=list(dict.fromkeys(c.digest for c in children)),
        config_digest=None,
        subject=subject,
        artifact_type=artifact_type,
        annotations=annotations,
    )
