"""GET /api/v1/namespaces[/{name}]: the namespaces that hold image streams, as `kubectl get ns`
shows them. A caller sees those where it may list image streams."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from auth.access import API_SCOPE, ApiAccess, Check, Needed
from registry.api import kubeapi, objects
from registry.api.imagestreams import visible_namespaces
from registry.api.routing import RouteSpec, no_access, registry
from registry.errors import ResourceNotFound
from registry.kube.core_v1 import NAMESPACES
from registry.kube.meta import timestamp
from registry.model import registry_config, streams
from registry.model.registry_config_spec import NAMESPACE as REGISTRY_NAMESPACE
from registry.names import NAME_COMPONENT_RE

# A namespace is no stored object: its uid is derived from its name, so it stays the same.
_UID_SPACE = uuid.UUID("5b0c8a4e-0d1f-4c8e-9a57-6f2f0b9d7a11")


def _namespace(name: str, created: datetime, resource_version: int) -> tuple[dict[str, Any], list[Any]]:
    obj = {
        "kind": "Namespace",
        "apiVersion": "v1",
        "metadata": {
            "name": name,
            "uid": str(uuid.uuid5(_UID_SPACE, name)),
            "resourceVersion": str(resource_version),
            "creationTimestamp": timestamp(created),
            "labels": {"kubernetes.io/metadata.name": name},
        },
        "spec": {"finalizers": ["kubernetes"]},
        "status": {"phase": "Active"},
    }
    return obj, [name, "Active", objects.short_age(created)]


def _path_name(request: Request) -> str:
    name = request.path_params["name"]
    if not NAME_COMPONENT_RE.fullmatch(name):
        raise ResourceNotFound("namespaces", "", name[:256])
    return name


def get_access(request: Request) -> list[Needed]:
    return [ApiAccess(Check("get", "imagestreams", _path_name(request)), API_SCOPE)]


async def list_namespaces(request: Request) -> Response:
    options = kubeapi.list_options(request)
    found, version = await streams.namespaces(registry(request))
    allowed = await visible_namespaces(request, streams.STREAMS, {name for name, _ in found})
    pairs = [_namespace(name, created, version) for name, created in found if name in allowed]
    return kubeapi.list_answer(request, NAMESPACES, pairs, version, options)


async def get_namespace(request: Request) -> Response:
    name = _path_name(request)
    found, version = await streams.namespaces(registry(request))
    created = next((when for candidate, when in found if candidate == name), None)
    if created is None and name == REGISTRY_NAMESPACE:  # the registry's pods live there (kubectl logs asks)
        created = (await registry_config.get_state(registry(request))).created_at
    if created is None:
        raise ResourceNotFound("namespaces", "", name)
    obj, row = _namespace(name, created, version)
    if kubeapi.wants_table(request):
        return kubeapi.respond(request, kubeapi.table(NAMESPACES, [(row, obj)], version))
    return kubeapi.respond(request, obj)


ROUTES = [
    RouteSpec("/api/v1/namespaces", "namespaces", {"GET": (list_namespaces, no_access)}),
    RouteSpec("/api/v1/namespaces/{name}", "namespace", {"GET": (get_namespace, get_access)}),
]
