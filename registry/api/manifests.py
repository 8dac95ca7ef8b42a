"""GET/HEAD/PUT/DELETE /v2/<name>/manifests/<reference>"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from registry.api.responses import empty
from registry.api.routing import RouteSpec, content_length, delete, pull, push, registry, repo_name
from registry.errors import ManifestTooLarge, ManifestUnknown, TagInvalid
from registry.model import manifests
from registry.names import is_digest, validate_digest, validate_tag
from registry.notifications import pulls


def _reference(request: Request) -> str:
    reference = request.path_params["reference"]
    return validate_digest(reference) if is_digest(reference) else validate_tag(reference)


def _lookup_reference(request: Request) -> str:
    """For reads and deletes a malformed tag is simply not there (404, as the conformance
    suite expects); only a push of one is a client error."""
    try:
        return _reference(request)
    except TagInvalid:
        raise ManifestUnknown(detail={"reference": request.path_params["reference"][:200]}) from None


async def get_manifest(request: Request) -> Response:
    reference = _lookup_reference(request)
    found = await manifests.get_manifest(registry(request), repo_name(request), reference)
    headers = {"Docker-Content-Digest": found.digest, "ETag": f'"{found.digest}"'}
    if request.method == "GET":
        tag = None if is_digest(reference) else reference
        pulls.pulled(registry(request), repo_name(request), found.digest, found.media_type, len(found.content), tag)
    if request.method == "HEAD":
        return Response(
            status_code=200, media_type=found.media_type, headers={**headers, "Content-Length": str(len(found.content))}
        )
    return Response(found.content, media_type=found.media_type, headers=headers)


async def _read_body(request: Request, limit: int) -> bytes:
    declared = content_length(request)
    if declared is not None and declared > limit:
        raise ManifestTooLarge(f"manifest is {declared} bytes; the limit is {limit}")
    parts: list[bytes] = []
    received = 0
    async for chunk in request.stream():
        received += len(chunk)
        if received > limit:
            raise ManifestTooLarge(f"manifest exceeds the limit of {limit} bytes")
        parts.append(chunk)
    return b"".join(parts)


async def put_manifest(request: Request) -> Response:
    reg = registry(request)
    name = repo_name(request)
    reference = _reference(request)
    content = await _read_body(request, reg.config.manifests.max_size)
    identity = getattr(request.state, "identity", None)
    result = await manifests.put_manifest(
        reg,
        name,
        reference,
        content,
        request.headers.get("content-type"),
        pushed_by=None if identity is None or identity.anonymous else identity.name,
    )
    headers = {"Location": f"/v2/{name}/manifests/{result.digest}", "Docker-Content-Digest": result.digest}
    if result.subject:
        headers["OCI-Subject"] = result.subject
    return empty(201, headers)


async def delete_manifest(request: Request) -> Response:
    await manifests.delete_manifest(registry(request), repo_name(request), _lookup_reference(request))
    return empty(202, {})


ROUTES = [
    RouteSpec(
        "/v2/{name:path}/manifests/{reference}",
        "manifest",
        {
            "GET": (get_manifest, pull),
            "HEAD": (get_manifest, pull),
            "PUT": (put_manifest, push),
            "DELETE": (delete_manifest, delete),
        },
    ),
]
