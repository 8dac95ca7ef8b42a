"""Image streams and images, read-only, in OpenShift's shapes (image.openshift.io/v1).

GET /apis/image.openshift.io/v1/imagestreams                              ImageStreamList, all namespaces
GET /apis/image.openshift.io/v1/namespaces/{ns}/imagestreams              ImageStreamList
GET /apis/image.openshift.io/v1/namespaces/{ns}/imagestreams/{name}       ImageStream
GET /apis/image.openshift.io/v1/images/{digest}                           Image

A stream needs what a pull from its repository needs (`get imagestreams/layers` in the
namespace). Lists and images need only an authenticated caller and show what it may pull:
an image no visible repository holds is 404, like one that does not exist.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlsplit

from starlette.requests import Request
from starlette.responses import Response

from auth.access import Access
from registry.api.routing import RouteSpec, access_controller, no_access, registry
from registry.errors import ResourceNotFound
from registry.model import imagestreams
from registry.model.imagestreams import GROUP, STREAMS, MayRead
from registry.names import NAME_MAX, NAME_RE

PREFIX = f"/apis/{GROUP}/v1"


def _json(request: Request, data: Any) -> Response:
    body = json.dumps(data).encode()
    if request.method == "HEAD":
        return Response(status_code=200, media_type="application/json", headers={"Content-Length": str(len(body))})
    return Response(body, media_type="application/json")


def registry_host(request: Request) -> str:
    """The host image references start with: http.base_url's, else the request's Host."""
    base_url = registry(request).config.http.base_url
    if base_url:
        return urlsplit(base_url).netloc or base_url.rstrip("/")
    return request.headers.get("host") or request.url.netloc


def stream_repository(request: Request) -> str:
    """The repository behind the stream in the path; a name that cannot exist is not found."""
    namespace, name = request.path_params["namespace"], request.path_params["name"]
    repo = f"{namespace}/{name}"
    if len(repo) > NAME_MAX or not NAME_RE.fullmatch(repo):
        raise ResourceNotFound(STREAMS, GROUP, name[:256])
    return repo


def stream_pull(request: Request) -> list[Access]:
    return [Access("repository", stream_repository(request), "pull")]


def _may_read(request: Request) -> MayRead:
    access, identity = access_controller(request), request.state.identity

    async def may_read(repo: str) -> bool:
        return await access.may_read(identity, repo)

    return may_read


async def list_all(request: Request) -> Response:
    access, identity = access_controller(request), request.state.identity
    may_read = None if await access.may_list_all(identity) else _may_read(request)
    streams = await imagestreams.list_image_streams(registry(request), registry_host(request), None, may_read)
    return _json(request, streams)


async def list_namespace(request: Request) -> Response:
    namespace = request.path_params["namespace"]
    host = registry_host(request)
    return _json(request, await imagestreams.list_image_streams(registry(request), host, namespace, _may_read(request)))


async def get_stream(request: Request) -> Response:
    namespace, name = stream_repository(request).split("/", 1)
    return _json(
        request, await imagestreams.get_image_stream(registry(request), registry_host(request), namespace, name)
    )


async def get_image(request: Request) -> Response:
    digest = request.path_params["digest"]
    image = await imagestreams.get_image(registry(request), registry_host(request), digest, _may_read(request))
    return _json(request, image)


ROUTES = [
    RouteSpec(f"{PREFIX}/imagestreams", "imagestreams_all", {"GET": (list_all, no_access)}),
    RouteSpec(f"{PREFIX}/namespaces/{{namespace}}/imagestreams", "imagestreams", {"GET": (list_namespace, no_access)}),
    RouteSpec(
        f"{PREFIX}/namespaces/{{namespace}}/imagestreams/{{name:path}}",
        "imagestream",
        {"GET": (get_stream, stream_pull)},
    ),
    RouteSpec(f"{PREFIX}/images/{{digest}}", "image", {"GET": (get_image, no_access)}),
]
