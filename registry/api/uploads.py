"""/v2/<name>/blobs/uploads/...: start (POST, with monolithic and mount forms), append
(PATCH), status (GET), finish (PUT) and cancel (DELETE)."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

from starlette.requests import Request
from starlette.responses import Response

from registry.api.responses import empty
from registry.api.routing import RouteSpec, access_controller, content_length, push, registry, repo_name
from registry.errors import BlobUploadUnknown, DigestInvalid, RangeInvalid, RequestTooLarge
from registry.model import uploads
from registry.model.uploads import ContentRange
from registry.names import validate_digest, validate_name

# Offsets of at most 19 digits (signed 64-bit): a longer number is refused before int() sees it.
_CONTENT_RANGE_RE = re.compile(r"^(?:bytes[ =])?(\d{1,19})-(\d{1,19})(?:/(?:\d{1,19}|\*))?$")
_UUID_RE = re.compile(r"^[A-Za-z0-9-]{8,64}$")


def _upload_id(request: Request) -> str:
    upload_id = request.path_params["uuid"]
    if not _UUID_RE.fullmatch(upload_id):
        raise BlobUploadUnknown(detail={"uuid": upload_id[:80]})
    return upload_id


def _content_range(request: Request) -> ContentRange | None:
    value = request.headers.get("content-range")
    if not value:
        return None
    m = _CONTENT_RANGE_RE.fullmatch(value.strip())
    if not m or int(m.group(2)) < int(m.group(1)):
        raise RangeInvalid(f"invalid Content-Range {value[:60]!r}; expected <start>-<end>")
    return ContentRange(int(m.group(1)), int(m.group(2)))


def _query_digest(request: Request) -> str | None:
    value = request.query_params.get("digest")
    if value is None:
        return None
    try:
        return validate_digest(value)
    except DigestInvalid:
        raise DigestInvalid("digest query parameter is not a valid digest", detail={"digest": value[:200]}) from None


def _chunk(request: Request, length: int | None) -> AsyncIterator[bytes]:
    """The body of a PATCH or closing PUT, refused with 413 past uploads.max_chunk_size (0:
    no limit): up front when its length is declared, else once that many bytes arrived.
    The session keeps its size either way, so the client can send smaller chunks."""
    limit = registry(request).config.uploads.max_chunk_size
    if not limit:
        return request.stream()
    if length is not None and length > limit:
        raise _chunk_too_large(limit)
    return _at_most(request.stream(), limit)


async def _at_most(body: AsyncIterator[bytes], limit: int) -> AsyncIterator[bytes]:
    received = 0
    async for data in body:
        received += len(data)
        if received > limit:
            raise _chunk_too_large(limit)
        yield data


def _chunk_too_large(limit: int) -> RequestTooLarge:
    return RequestTooLarge(f"an upload chunk may be at most {limit} bytes", detail={"max_chunk_size": limit})


def _session_headers(name: str, upload_id: str, size: int) -> dict[str, str]:
    return {
        "Location": f"/v2/{name}/blobs/uploads/{upload_id}",
        "Range": f"0-{max(size - 1, 0)}",
        "Docker-Upload-UUID": upload_id,
    }


def _created(name: str, digest: str) -> Response:
    return empty(201, {"Location": f"/v2/{name}/blobs/{digest}", "Docker-Content-Digest": digest})


async def start(request: Request) -> Response:
    reg = registry(request)
    name = repo_name(request)
    mount = request.query_params.get("mount")
    if mount is not None:
        digest = validate_digest(mount)
        source = request.query_params.get("from") or None
        if source is not None:
            validate_name(source)
        identity = request.state.identity
        access = access_controller(request)

        async def may_read(repo: str) -> bool:
            return await access.may_read(identity, repo)

        if await uploads.mount_blob(reg, name, digest, source, may_read) is not None:
            return _created(name, digest)
        # Not mountable: fall through to a normal upload session (202).
    digest = _query_digest(request)
    if digest is not None:
        await uploads.monolithic_upload(reg, name, digest, request.stream(), content_length(request))
        return _created(name, digest)
    upload_id = await uploads.start_upload(reg, name)
    return empty(202, _session_headers(name, upload_id, 0))


async def append(request: Request) -> Response:
    reg = registry(request)
    name = repo_name(request)
    upload_id = _upload_id(request)
    length = content_length(request)
    size = await uploads.append_chunk(reg, name, upload_id, _chunk(request, length), _content_range(request), length)
    return empty(202, _session_headers(name, upload_id, size))


async def status(request: Request) -> Response:
    name = repo_name(request)
    upload_id = _upload_id(request)
    size = await uploads.upload_size(registry(request), name, upload_id)
    return empty(204, _session_headers(name, upload_id, size))


async def finish(request: Request) -> Response:
    reg = registry(request)
    name = repo_name(request)
    upload_id = _upload_id(request)
    digest = _query_digest(request)
    if digest is None:
        raise DigestInvalid("the closing PUT needs a digest query parameter")
    length = content_length(request)
    has_body = length != 0 and (length is not None or "chunked" in request.headers.get("transfer-encoding", ""))
    await uploads.finish_upload(
        reg,
        name,
        upload_id,
        digest,
        _chunk(request, length) if has_body else None,
        length,
        _content_range(request) if has_body else None,
    )
    return _created(name, digest)


async def cancel(request: Request) -> Response:
    await uploads.cancel_upload(registry(request), repo_name(request), _upload_id(request))
    return empty(204, {})


ROUTES = [
    RouteSpec("/v2/{name:path}/blobs/uploads/", "uploads", {"POST": (start, push)}),
    RouteSpec("/v2/{name:path}/blobs/uploads", "uploads", {"POST": (start, push)}),
    RouteSpec(
        "/v2/{name:path}/blobs/uploads/{uuid}",
        "upload",
        {
            "GET": (status, push),
            "HEAD": (status, push),
            "PATCH": (append, push),
            "PUT": (finish, push),
            "DELETE": (cancel, push),
        },
    ),
]
