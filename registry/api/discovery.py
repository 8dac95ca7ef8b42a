"""What kubectl asks an API server before anything else: the version, the groups and
resources served (discovery), and the OpenAPI v3 documents of each group version."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from registry.api import kubeapi
from registry.api.routing import RouteSpec, no_access, public
from registry.errors import RouteUnknown
from registry.kube import core_v1, image_v1, notifications_v1, openapi, operator_v1
from registry.kube.authorization_v1 import AUTHORIZATION_RESOURCES
from registry.kube.authorization_v1 import COMPONENTS as AUTHZ_COMPONENTS
from registry.kube.resources import ResourceDef
from registry.kube.schema import Schema
from registry.runtime import version as okura_version

# group -> version -> (resources, component schemas)
GROUPS: dict[str, dict[str, tuple[tuple[ResourceDef, ...], dict[str, Schema]]]] = {
    image_v1.GROUP: {image_v1.VERSION: (image_v1.RESOURCES, image_v1.COMPONENTS)},
    operator_v1.GROUP: {operator_v1.VERSION: (operator_v1.RESOURCES, operator_v1.COMPONENTS)},
    "authorization.k8s.io": {"v1": (AUTHORIZATION_RESOURCES, AUTHZ_COMPONENTS)},
    notifications_v1.GROUP: {notifications_v1.VERSION: (notifications_v1.RESOURCES, notifications_v1.COMPONENTS)},
}
CORE: tuple[tuple[ResourceDef, ...], dict[str, Schema]] = (core_v1.RESOURCES, core_v1.COMPONENTS)


def _group(name: str) -> dict[str, Any]:
    versions = [{"groupVersion": f"{name}/{v}", "version": v} for v in GROUPS[name]]
    return {"name": name, "versions": versions, "preferredVersion": versions[0]}


async def version(request: Request) -> Response:
    major, minor = openapi.KUBERNETES_VERSION.lstrip("v").split(".")[:2]
    return kubeapi.respond(
        request,
        {
            "major": major,
            "minor": minor,
            "gitVersion": f"{openapi.KUBERNETES_VERSION}+okura-{okura_version()}",
            "gitCommit": "",
            "gitTreeState": "clean",
            "buildDate": "",
            "goVersion": "",
            "compiler": "",
            "platform": "linux/amd64",
        },
    )


async def core_versions(request: Request) -> Response:
    return kubeapi.respond(
        request,
        {
            "kind": "APIVersions",
            "apiVersion": "v1",
            "versions": ["v1"],
            "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": request.url.netloc}],
        },
    )


async def core_resources(request: Request) -> Response:
    resources, _ = CORE
    listing = _resource_list("v1", resources)
    listing["resources"].extend(dict(sub) for sub in core_v1.SUBRESOURCES)
    return kubeapi.respond(request, listing)


async def groups(request: Request) -> Response:
    return kubeapi.respond(request, {"kind": "APIGroupList", "apiVersion": "v1", "groups": [_group(g) for g in GROUPS]})


async def group(request: Request) -> Response:
    name = request.path_params["group"]
    if name not in GROUPS:
        raise RouteUnknown("the server could not find the requested resource")
    return kubeapi.respond(request, {"kind": "APIGroup", "apiVersion": "v1", **_group(name)})


def _resource_list(group_version: str, resources: tuple[ResourceDef, ...]) -> dict[str, Any]:
    return {
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": group_version,
        "resources": [r.discovery() for r in resources],
    }


def _lookup(group_name: str, version_name: str) -> tuple[tuple[ResourceDef, ...], dict[str, Schema]]:
    found = GROUPS.get(group_name, {}).get(version_name)
    if found is None:
        raise RouteUnknown("the server could not find the requested resource")
    return found


async def group_resources(request: Request) -> Response:
    g, v = request.path_params["group"], request.path_params["version"]
    resources, _ = _lookup(g, v)
    return kubeapi.respond(request, _resource_list(f"{g}/{v}", resources))


def _documents() -> dict[str, dict[str, Any]]:
    docs = {"api/v1": openapi.document("v1", list(CORE[0]), CORE[1])}
    for g, versions in GROUPS.items():
        for v, (resources, components) in versions.items():
            docs[f"apis/{g}/{v}"] = openapi.document(f"{g}/{v}", list(resources), components)
    return docs


DOCUMENTS = _documents()


async def openapi_index(request: Request) -> Response:
    return kubeapi.respond(request, openapi.index(DOCUMENTS))


async def openapi_document(request: Request) -> Response:
    path = request.path_params["path"].strip("/")
    doc = DOCUMENTS.get(path)
    if doc is None:
        raise RouteUnknown("the server could not find the requested resource")
    # The URL carries the document's hash: it never changes under it.
    response = kubeapi.respond(request, doc)
    response.headers["Cache-Control"] = "public, max-age=31536000, immutable"
    return response


ROUTES = [
    RouteSpec("/version", "version", {"GET": (version, public)}),
    RouteSpec("/api", "discovery", {"GET": (core_versions, no_access)}),
    RouteSpec("/api/v1", "discovery", {"GET": (core_resources, no_access)}),
    RouteSpec("/apis", "discovery", {"GET": (groups, no_access)}),
    RouteSpec("/apis/{group}", "discovery", {"GET": (group, no_access)}),
    RouteSpec("/apis/{group}/{version}", "discovery", {"GET": (group_resources, no_access)}),
    RouteSpec("/openapi/v3", "openapi", {"GET": (openapi_index, no_access)}),
    RouteSpec("/openapi/v3/{path:path}", "openapi", {"GET": (openapi_document, no_access)}),
]
