"""The registry's server processes as OpenShift's registry pods (cluster-admins only):

GET /api/v1/pods                                                  every namespace's (these)
GET /api/v1/namespaces/openshift-image-registry/pods             list (other namespaces: none)
GET /api/v1/namespaces/openshift-image-registry/pods/{name}      one (404 Status when unknown)

Every registered server that has not exited cleanly is listed, lost ones as Unknown; their
logs are served by registry/api/pod_logs.py. Label and field selectors (docker-registry=default,
metadata.name=...) and Tables for kubectl work as on other lists; watching is not served.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from auth.access import API_SCOPE
from registry.api import kubeapi
from registry.api.pod_objects import pod_object, pod_row
from registry.api.routing import RouteSpec, cluster_check, registry
from registry.errors import ResourceNotFound, Unsupported
from registry.kube.core_v1 import PODS
from registry.model import changes, instances
from registry.model.registry_config_spec import NAMESPACE

list_access = cluster_check("list", "pods", API_SCOPE)
get_access = cluster_check("get", "pods", API_SCOPE)


async def _pods(request: Request) -> tuple[list[tuple[dict[str, Any], list[Any]]], int]:
    reg = registry(request)
    found = await instances.registered(reg)
    version = await reg.db.read(changes.latest)
    now, timeout = datetime.now(UTC), reg.config.instances.heartbeat_timeout
    ordered = sorted(found, key=lambda i: i.name)  # the order pages continue in
    return [(pod_object(i, now, timeout), pod_row(i, now, timeout)) for i in ordered], version


async def list_pods(request: Request) -> Response:
    options = kubeapi.list_options(request)
    if options.watch:
        raise Unsupported("pods are not watched here: list them")
    namespace = request.path_params.get("namespace")
    if namespace in (None, NAMESPACE):
        pairs, version = await _pods(request)
    else:
        pairs, version = [], await registry(request).db.read(changes.latest)
    return kubeapi.list_answer(request, PODS, pairs, version, options)


async def get_pod(request: Request) -> Response:
    namespace, name = request.path_params["namespace"], request.path_params["name"]
    reg = registry(request)
    instance = await instances.get(reg, name) if namespace == NAMESPACE else None
    if instance is None:
        raise ResourceNotFound("pods", "", name[:256])
    now, timeout = datetime.now(UTC), reg.config.instances.heartbeat_timeout
    obj = pod_object(instance, now, timeout)
    if kubeapi.wants_table(request):
        include = kubeapi.list_options(request).include
        return kubeapi.respond(request, kubeapi.table(PODS, [(pod_row(instance, now, timeout), obj)], None, include))
    return kubeapi.respond(request, obj)


ROUTES = [
    RouteSpec("/api/v1/pods", "pods_all", {"GET": (list_pods, list_access)}),
    RouteSpec("/api/v1/namespaces/{namespace}/pods", "pods", {"GET": (list_pods, list_access)}),
    RouteSpec("/api/v1/namespaces/{namespace}/pods/{name}", "pod", {"GET": (get_pod, get_access)}),
]
