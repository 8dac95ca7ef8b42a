"""Tag lists, the catalog and referrers."""

from __future__ import annotations

import json

from starlette.requests import Request
from starlette.responses import Response

from auth.access import Access
from registry.api.routing import (
    RouteSpec,
    access_controller,
    next_link,
    pagination,
    path_digest,
    pull,
    registry,
    repo_name,
)
from registry.model import listings
from registry.model.manifest_format import OCI_INDEX


def _json(data: object, headers: dict[str, str] | None = None, media_type: str = "application/json") -> Response:
    return Response(json.dumps(data, separators=(",", ":")).encode(), media_type=media_type, headers=headers)


async def list_tags(request: Request) -> Response:
    reg = registry(request)
    name = repo_name(request)
    limit, last = pagination(request, reg.config.pagination.tags_max_entries)
    page = await listings.list_tags(reg, name, limit, last)
    headers = {"Link": next_link(f"/v2/{name}/tags/list", limit, page.items[-1])} if page.more else None
    return _json({"name": name, "tags": page.items}, headers)


def catalog_access(request: Request) -> list[Access]:
    return [Access("registry", "catalog", "*")]


async def catalog(request: Request) -> Response:
    reg = registry(request)
    limit, last = pagination(request, reg.config.pagination.catalog_max_entries)
    access, identity = access_controller(request), request.state.identity
    visible = None
    if not await access.may_list_all(identity):

        async def visible(repo: str) -> bool:
            return await access.may_read(identity, repo)

    page = await listings.list_repositories(reg, limit, last, visible)
    headers = {"Link": next_link("/v2/_catalog", limit, page.items[-1])} if page.more else None
    return _json({"repositories": page.items}, headers)


async def referrers(request: Request) -> Response:
    reg = registry(request)
    artifact_type = request.query_params.get("artifactType") or None
    index = await listings.list_referrers(reg, repo_name(request), path_digest(request), artifact_type)
    headers = {"OCI-Filters-Applied": "artifactType"} if artifact_type else None
    return _json(index, headers, media_type=OCI_INDEX)


ROUTES = [
    RouteSpec("/v2/_catalog", "catalog", {"GET": (catalog, catalog_access)}),
    RouteSpec("/v2/{name:path}/tags/list", "tags", {"GET": (list_tags, pull)}),
    RouteSpec("/v2/{name:path}/referrers/{digest}", "referrers", {"GET": (referrers, pull)}),
]
