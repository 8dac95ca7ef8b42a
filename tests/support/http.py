"""The OCI distribution API over httpx: blobs, images and indexes pushed the ways clients push
them, and checks of the error shapes (the OCI envelope under /v2/, a Kubernetes Status under /apis/)."""

from __future__ import annotations

import json
import os
from typing import Any

import httpx

from tests.support.digests import sha256
from tests.support.media_types import DOCKER_CONFIG, DOCKER_LAYER, DOCKER_MANIFEST, OCI_CONFIG, OCI_LAYER, OCI_MANIFEST


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


def error_code(response: httpx.Response) -> str:
    return response.json()["errors"][0]["code"]


def parse_range(value: str) -> int:
    """The size an upload's `Range: 0-<last>` header reports ("0-0" also means empty)."""
    start, _, last = value.partition("-")
    assert start == "0", value
    return int(last) + 1


async def push_blob_chunked(client: httpx.AsyncClient, repo: str, data: bytes, chunk: int = 256 * 1024) -> str:
    """POST, PATCH chunks with Content-Range, closing PUT: the docker/podman way."""
    digest = sha256(data)
    r = await client.post(f"/v2/{repo}/blobs/uploads/")
    assert r.status_code == 202, r.text
    location = r.headers["Location"]
    for start in range(0, len(data), chunk):
        part = data[start : start + chunk]
        r = await client.patch(
            location,
            content=part,
            headers={
                "Content-Type": "application/octet-stream",
                "Content-Range": f"{start}-{start + len(part) - 1}",
            },
        )
        assert r.status_code == 202, r.text
        location = r.headers["Location"]
    r = await client.put(location, params={"digest": digest})
    assert r.status_code == 201, r.text
    assert r.headers["Docker-Content-Digest"] == digest
    return digest
