"""GET/HEAD/DELETE /v2/<name>/blobs/<digest>"""

from __future__ import annotations

import re

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from registry.api.file_body import FileBody
from registry.api.responses import StreamedBody, empty
from registry.api.routing import RouteSpec, delete, path_digest, pull, registry, repo_name
from registry.errors import BlobUnknown, RangeNotSatisfiable, Unavailable
from registry.model import blobs, pullthrough

_RANGE_RE = re.compile(r"^bytes=(\d*)-(\d*)$")
MAX_OFFSET_DIGITS = 19  # a signed 64-bit offset; longer numbers never reach int()


def parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """A single byte range as (start, end inclusive); None serves the whole blob.
    Malformed or multi-range headers are ignored, as RFC 9110 allows."""
    if not header:
        return None
    m = _RANGE_RE.fullmatch(header.strip())
    if not m or (not m.group(1) and not m.group(2)):
        return None
    first, last = m.groups()
    if len(first) > MAX_OFFSET_DIGITS or len(last) > MAX_OFFSET_DIGITS:  # past any size there can be
        raise RangeNotSatisfiable(headers={"Content-Range": f"bytes */{size}"})
    if first == "":  # suffix range: the last N bytes
        n = int(last)
        if n == 0:
            raise RangeNotSatisfiable(headers={"Content-Range": f"bytes */{size}"})
        return max(size - n, 0), size - 1
    start = int(first)
    end = size - 1 if last == "" else min(int(last), size - 1)
    if start >= size or (last != "" and int(last) < start):
        raise RangeNotSatisfiable(headers={"Content-Range": f"bytes */{size}"})
    return start, end


async def get_blob(request: Request) -> Response:
    reg = registry(request)
    name = repo_name(request)
    digest = path_digest(request)
    size = await blobs.linked_blob_size(reg, name, digest)
    if size is None:
        return await _pull_through(request, name, digest)
    # Only GET is redirected: a HEAD is answered from the metadata, sparing the client a
    # round trip to object storage.
    url = await blobs.redirect_url(reg, digest, "GET") if request.method == "GET" else None
    if url is not None:
        return RedirectResponse(url, status_code=307, headers={"Docker-Content-Digest": digest})
    headers = {
        "Docker-Content-Digest": digest,
        "ETag": f'"{digest}"',
        "Accept-Ranges": "bytes",
        "Cache-Control": "max-age=31536000",
    }
    byte_range = parse_range(request.headers.get("range"), size)
    status = 200
    start, length = 0, size
    if byte_range is not None:
        start, end = byte_range
        length = end - start + 1
        status = 206
        headers["Content-Range"] = f"bytes {start}-{end}/{size}"
    headers["Content-Length"] = str(length)
    if request.method == "HEAD":
        return StreamedBody(None, status, headers)
    path = blobs.local_path(reg, digest)
    if path is not None:
        raw = [(k.lower().encode(), v.encode()) for k, v in headers.items()]
        raw.append((b"content-type", b"application/octet-stream"))
        return FileBody(path, start, length, status, raw)  # type: ignore[return-value]
    cached = await blobs.small_blob(reg, digest, size)
    if cached is not None:
        return Response(cached[start : start + length], status, headers, media_type="application/octet-stream")
    body = await blobs.read_blob(reg, digest, start, length) if length else None
    return StreamedBody(body, status, headers)


async def _pull_through(request: Request, name: str, digest: str) -> Response:
    """A blob an imported image references and this registry does not hold yet: stream it
    from the upstream (stored on the way), or link the copy another repository has."""
    reg = registry(request)
    remote = await pullthrough.find(reg, name, digest)
    if remote is None:
        raise BlobUnknown(detail={"digest": digest})
    if await pullthrough.local_copy(reg, remote):
        return await get_blob(request)
    headers = {"Docker-Content-Digest": digest, "ETag": f'"{digest}"', "Accept-Ranges": "bytes"}
    if request.method == "HEAD":
        return StreamedBody(None, 200, {**headers, "Content-Length": str(remote.size)})
    if request.headers.get("range"):  # a part of it: store it whole first, then serve the part
        if await pullthrough.fetch_to_storage(reg, remote):
            return await get_blob(request)
        raise Unavailable("the blob is being fetched from upstream; retry", headers={"Retry-After": "1"})
    body = await pullthrough.open_stream(reg, remote)
    return StreamedBody(body, 200, {**headers, "Content-Length": str(remote.size)})


async def delete_blob(request: Request) -> Response:
    await blobs.unlink_blob(registry(request), repo_name(request), path_digest(request))
    return empty(202, {})


ROUTES = [
    RouteSpec(
        "/v2/{name:path}/blobs/{digest}",
        "blob",
        {
            "GET": (get_blob, pull),
            "HEAD": (get_blob, pull),
            "DELETE": (delete_blob, delete),
        },
    ),
]
