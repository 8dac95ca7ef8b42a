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


API_VERSION_HEADER = "Docker-Distribution-API-Version"


def relative(location: str) -> str:
    """A Location header as a path (+ query) the test client can follow, absolute or relative."""
    url = httpx.URL(location)
    return url.raw_path.decode() if url.is_absolute_url else location


def assert_error(response: httpx.Response, status: int, code: str | None = None) -> dict[str, Any]:
    """The response is an error with `status`, the exact OCI envelope and (optionally) `code`.
    HEAD answers carry no body; only their status and headers are checked. Returns the first error."""
    where = f"{response.request.method} {response.request.url}"
    assert response.status_code == status, (where, response.status_code, response.text[:500])
    assert response.headers.get(API_VERSION_HEADER) == "registry/2.0", where
    if response.request.method == "HEAD":
        assert response.content == b""
        return {}
    assert response.headers.get("content-type", "").split(";")[0].strip() == "application/json"
    body = response.json()
    assert isinstance(body, dict) and set(body) == {"errors"}, body
    assert isinstance(body["errors"], list) and body["errors"], body
    for e in body["errors"]:
        assert set(e) == {"code", "message", "detail"}, e
        assert isinstance(e["code"], str) and e["code"], e
        assert isinstance(e["message"], str), e
    if code is not None:
        assert body["errors"][0]["code"] == code, (where, body)
    return body["errors"][0]


async def upload_blob(client: httpx.AsyncClient, repo: str, data: bytes, digest: str | None = None) -> httpx.Response:
    """POST an upload session, then PUT the whole blob to its Location (the suite's way of pushing)."""
    r = await client.post(f"/v2/{repo}/blobs/uploads/")
    assert r.status_code == 202, r.text
    return await client.put(
        relative(r.headers["Location"]),
        params={"digest": digest or sha256(data)},
        content=data,
        headers={"Content-Type": "application/octet-stream"},
    )


async def put_manifest(
    client: httpx.AsyncClient, repo: str, reference: str, content: bytes, media_type: str = OCI_MANIFEST
) -> httpx.Response:
    return await client.put(f"/v2/{repo}/manifests/{reference}", content=content, headers={"Content-Type": media_type})


STATUS_FIELDS = {"kind", "apiVersion", "metadata", "status", "message", "reason", "details", "code"}


def assert_status(response: httpx.Response, code: int, reason: str) -> dict[str, Any]:
    """The response is a Kubernetes `Status` (the error shape under /apis/) with `code` and
    `reason`. HEAD answers carry no body; only their status is checked. Returns the Status."""
    where = f"{response.request.method} {response.request.url}"
    assert response.status_code == code, (where, response.status_code, response.text[:500])
    if response.request.method == "HEAD":
        assert response.content == b""
        return {}
    assert response.headers.get("content-type", "").split(";")[0].strip() == "application/json", where
    body = response.json()
    assert set(body) == STATUS_FIELDS, body
    assert (body["kind"], body["apiVersion"], body["metadata"], body["status"]) == ("Status", "v1", {}, "Failure")
    assert (body["code"], body["reason"]) == (code, reason), body
    assert isinstance(body["message"], str) and body["message"], body
    assert isinstance(body["details"], dict), body
    return body
