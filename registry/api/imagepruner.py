"""The ImagePruner resource, as OpenShift's API serves it (cluster-admins only):

GET    /apis/imageregistry.operator.openshift.io/v1/imagepruners/cluster
PUT    ... a whole object, JSON or YAML (`status` is ignored)
PATCH  ... a JSON merge patch (application/merge-patch+json; application/json and
       application/strategic-merge-patch+json are applied as merge patches too)
"""

from __future__ import annotations

import json
from typing import Any

import yaml
from starlette.requests import Request
from starlette.responses import Response

from auth.access import Access
from registry.api.routing import RouteSpec, cluster_check, registry
from registry.errors import RequestInvalid, UnsupportedMediaType
from registry.pruning import resource

PATH = f"/apis/{resource.API_VERSION}/imagepruners/{resource.NAME}"
MAX_BODY = 256 * 1024
MERGE_PATCH_TYPES = (
    "application/merge-patch+json",
    "application/json",
    "application/strategic-merge-patch+json",
)


read_access = cluster_check("get", "imagepruners", Access("registry", "imagepruners", "get"))
write_access = cluster_check("update", "imagepruners", Access("registry", "imagepruners", "*"))


def _media_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";")[0].strip().lower()


async def _raw_body(request: Request) -> bytes:
    raw = await request.body()
    if len(raw) > MAX_BODY:
        raise RequestInvalid(f"request body larger than {MAX_BODY} bytes")
    if not raw.strip():
        raise RequestInvalid("request body is empty")
    return raw


def _parse(raw: bytes, media_type: str) -> Any:
    if "yaml" in media_type:
        try:
            return yaml.safe_load(raw)
        except (yaml.YAMLError, ValueError, RecursionError) as e:  # ValueError: a 5,000-digit number
            raise RequestInvalid(f"request body is not valid YAML: {str(e)[:300]}") from None
    try:
        return json.loads(raw)
    except (ValueError, RecursionError):
        if media_type.endswith("json"):
            raise RequestInvalid("request body is not valid JSON") from None
    try:  # no (or a generic) content type: YAML, as kubectl accepts either
        return yaml.safe_load(raw)
    except (yaml.YAMLError, ValueError, RecursionError):
        raise RequestInvalid("request body is neither JSON nor YAML") from None


async def _answer(request: Request) -> Response:
    obj = await resource.current_object(registry(request))
    if "yaml" in request.headers.get("accept", "") and "json" not in request.headers.get("accept", ""):
        return Response(yaml.safe_dump(obj, sort_keys=False).encode(), media_type="application/yaml")
    return Response(json.dumps(obj).encode(), media_type="application/json")


async def get_pruner(request: Request) -> Response:
    return await _answer(request)


async def put_pruner(request: Request) -> Response:
    body = _parse(await _raw_body(request), _media_type(request))
    await resource.apply_object(registry(request), body)
    return await _answer(request)


async def patch_pruner(request: Request) -> Response:
    media_type = _media_type(request)
    if media_type not in MERGE_PATCH_TYPES:
        raise UnsupportedMediaType(
            f"unsupported patch type {media_type or '(none)'!r}; use {', '.join(MERGE_PATCH_TYPES)}"
        )
    try:
        patch = json.loads(await _raw_body(request))
    except (ValueError, RecursionError):
        raise RequestInvalid("the patch is not valid JSON") from None
    await resource.patch_object(registry(request), patch)
    return await _answer(request)


ROUTES = [
    RouteSpec(
        PATH,
        "imagepruner",
        {
            "GET": (get_pruner, read_access),
            "PUT": (put_pruner, write_access),
            "PATCH": (patch_pruner, write_access),
        },
    ),
]
