"""Building blocks for protocol tests: blobs, images and indexes pushed over HTTP."""

from __future__ import annotations

import hashlib
import json
import os
from typing import Any

import httpx

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip"
EMPTY_CONFIG = "application/vnd.oci.empty.v1+json"


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


async def push_blob(client: httpx.AsyncClient, repo: str, data: bytes) -> str:
    digest = sha256(data)
    r = await client.post(
        f"/v2/{repo}/blobs/uploads/",
        params={"digest": digest},
        content=data,
        headers={"Content-Type": "application/octet-stream"},
    )
    assert r.status_code == 201, r.text
    return digest


def descriptor(media_type: str, data: bytes, **extra: Any) -> dict[str, Any]:
    return {"mediaType": media_type, "digest": sha256(data), "size": len(data), **extra}


async def push_image(
    client: httpx.AsyncClient,
    repo: str,
    reference: str | None = None,
    *,
    layers: int = 1,
    media_type: str = OCI_MANIFEST,
    extra: dict[str, Any] | None = None,
    config: bytes | None = None,
    config_type: str | None = None,
) -> tuple[str, bytes]:
    """Push a small image (config + random layers) and its manifest; return (digest, manifest bytes)."""
    docker = media_type == DOCKER_MANIFEST
    config = (
        config
        if config is not None
        else json.dumps(
            {
                "architecture": "amd64",
                "os": "linux",
                "rootfs": {"type": "layers", "diff_ids": []},
                "nonce": os.urandom(8).hex(),
            }
        ).encode()
    )
    await push_blob(client, repo, config)
    layer_descs = []
    for _ in range(layers):
        data = os.urandom(1024)
        await push_blob(client, repo, data)
        layer_descs.append(descriptor(DOCKER_LAYER if docker else OCI_LAYER, data))
    manifest: dict[str, Any] = {
        "schemaVersion": 2,
        "mediaType": media_type,
        "config": descriptor(config_type or (DOCKER_CONFIG if docker else OCI_CONFIG), config),
        "layers": layer_descs,
        **(extra or {}),
    }
    body = json.dumps(manifest).encode()
    digest = sha256(body)
    r = await client.put(
        f"/v2/{repo}/manifests/{reference or digest}", content=body, headers={"Content-Type": media_type}
    )
    assert r.status_code == 201, r.text
    assert r.headers["Docker-Content-Digest"] == digest
    return digest, body


def error_codes(response: httpx.Response) -> list[str]:
    body = response.json()
    assert set(body) == {"errors"}, body
    for e in body["errors"]:
        assert {"code", "message", "detail"} <= set(e), e
    return [e["code"] for e in body["errors"]]
