from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from registry.api.routing import RouteSpec, no_access

EMPTY_JSON = b"{}"


async def version_check(request: Request) -> Response:
    """GET /v2/: the API version check every client starts with."""
    return Response(EMPTY_JSON, media_type="application/json")


ROUTES = [
    RouteSpec("/v2/", "base", {"GET": (version_check, no_access), "HEAD": (version_check, no_access)}),
    RouteSpec("/v2", "base", {"GET": (version_check, no_access), "HEAD": (version_check, no_access)}),
]
