"""NotificationEndpoints: the webhook endpoints of registry events, managed live (cluster-scoped,
cluster-admins only; every verb is checked as itself on `notificationendpoints`):

GET    /apis/notifications.okura.io/v1/notificationendpoints          list or watch
POST   /apis/notifications.okura.io/v1/notificationendpoints          create
GET    /apis/notifications.okura.io/v1/notificationendpoints/{name}   get
PUT    ...                                                            replace (resourceVersion precondition)
PATCH  ...                                                            merge, JSON or strategic patch
DELETE ...                                                            delete (DeleteOptions preconditions)

The config file's endpoints are listed too, annotated notifications.okura.io/source: config,
and refused to every write. spec.secret is taken on writes and never returned (status.signed
says whether there is one); a write that leaves it out keeps the current one, "" removes it.
"""

from __future__ import annotations

import copy
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from registry.api import kubeapi, objects
from registry.api.imagestreams import cluster, deleted_status
from registry.api.routing import RouteSpec, registry
from registry.config import ENDPOINT_NAME_RE
from registry.errors import ResourceNotFound
from registry.kube import notifications_v1
from registry.kube.meta import label_value_problem, qualified_name_problem, timestamp
from registry.kube.notifications_v1 import API_VERSION, KIND, NOTIFICATION_ENDPOINTS
from registry.kube.patches import apply_patch
from registry.model import notification_endpoints as model
from registry.model.changes import LoggedChange
from registry.model.notification_endpoints import Endpoint, EndpointEdit

COMPONENTS = notifications_v1.COMPONENTS
PATH = f"/apis/{API_VERSION}/notificationendpoints"


# -- rendering -----------------------------------------------------------------------------------


def _status(e: Endpoint) -> dict[str, Any]:
    status: dict[str, Any] = {"signed": e.signed}
    s = e.state
    if s is None:
        return status
    status.update(cursor=s.cursor, pending=s.pending, delivered=s.delivered, dropped=s.dropped, failures=s.failures)
    if s.last_success:
        status["lastSuccessTime"] = timestamp(s.last_success)
    if s.last_error_at:
        status["lastErrorTime"] = timestamp(s.last_error_at)
    if s.last_error:
        status["lastError"] = s.last_error
    return status


def endpoint_object(e: Endpoint) -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": e.name, "uid": e.uid}
    if e.resource_version:  # 0: a config endpoint, or what a dry-run create would make
        metadata["resourceVersion"] = str(e.resource_version)
    metadata["generation"] = e.generation
    if e.created is not None:
        metadata["creationTimestamp"] = timestamp(e.created)
    if e.labels:
        metadata["labels"] = dict(e.labels)
    if e.annotations:
        metadata["annotations"] = dict(e.annotations)
    # A copy: patches are applied to this object and must not reach the model's.
    spec = notifications_v1.object_spec(copy.deepcopy(dict(e.spec)))
    return {"kind": KIND, "apiVersion": API_VERSION, "metadata": metadata, "spec": spec, "status": _status(e)}


def _row(e: Endpoint) -> list[Any]:
    state = e.state
    age = objects.short_age(e.created) if e.created else "<unknown>"
    pending, failures = (state.pending, state.failures) if state else (0, 0)
    last_error = (state.last_error or "") if state else ""
    url, fmt = e.spec.get("url", ""), e.spec.get("format", "distribution")
    return [e.name, url, e.source, pending, failures, age, fmt, last_error]


def _pair(e: Endpoint) -> tuple[dict[str, Any], list[Any]]:
    return endpoint_object(e), _row(e)


# -- reading objects -----------------------------------------------------------------------------


def _name(request: Request) -> str:
    name = request.path_params["name"]
    if not ENDPOINT_NAME_RE.fullmatch(name):
        raise ResourceNotFound(model.RESOURCE, model.GROUP, name[:256])
    return name


def _string_map(value: Any, where: str, name: str, labels: bool) -> dict[str, str]:
    """Labels or annotations, keys (and label values) checked as the API server checks them;
    the types were checked against the schema already."""
    for key, item in (value or {}).items():
        problem = qualified_name_problem(key) or (label_value_problem(item) if labels else None)
        if problem:
            raise model.invalid(name, f"{where}[{key[:320]}]", problem)
    return dict(value or {})


def _edit(obj: dict[str, Any], name: str) -> EndpointEdit:
    """What an object sent by a client asks for (metadata.namespace is ignored, as the API
    server ignores it on cluster-scoped objects; status is the server's)."""
    metadata = obj.get("metadata") or {}
    if metadata.get("name") not in (None, name):
        raise model.invalid(name, "metadata.name", f"must be {name!r}, the name in the URL")
    if obj.get("kind") not in (None, KIND):
        raise model.invalid(name, "kind", f"must be {KIND}")
    if obj.get("apiVersion") not in (None, API_VERSION):
        raise model.invalid(name, "apiVersion", f"must be {API_VERSION}")
    labels = _string_map(metadata.get("labels"), "metadata.labels", name, labels=True)
    annotations = _string_map(metadata.get("annotations"), "metadata.annotations", name, labels=False)
    return EndpointEdit(notifications_v1.stored_spec(obj.get("spec") or {}), labels, annotations)


# -- handlers ------------------------------------------------------------------------------------


async def list_endpoints(request: Request) -> Response:
    reg, options = registry(request), kubeapi.list_options(request)
    if options.watch:
        start = await kubeapi.watch_start(request, options)
        initial = [] if options.resource_version else [_pair(e) for e in (await model.list_endpoints(reg))[0]]

        async def render(logged: list[LoggedChange]) -> list[tuple[LoggedChange, dict[str, Any], list[Any]]]:
            return [(c, *_pair(e)) for c, e in await model.changed(reg, logged)]

        return kubeapi.watch_answer(request, NOTIFICATION_ENDPOINTS, options, start, [model.RESOURCE], render, initial)
    found, version = await model.list_endpoints(reg)
    return kubeapi.list_answer(request, NOTIFICATION_ENDPOINTS, [_pair(e) for e in found], version, options)


async def get_endpoint(request: Request) -> Response:
    found = await model.get_endpoint(registry(request), _name(request))
    if kubeapi.wants_table(request):
        include = kubeapi.list_options(request).include
        table = kubeapi.table(NOTIFICATION_ENDPOINTS, [(_row(found), endpoint_object(found))], None, include)
        return kubeapi.respond(request, table)
    return kubeapi.respond(request, endpoint_object(found))


async def create_endpoint(request: Request) -> Response:
    obj, warnings = await kubeapi.read_object(request, NOTIFICATION_ENDPOINTS, COMPONENTS)
    name = (obj.get("metadata") or {}).get("name")
    if not isinstance(name, str) or not name:
        raise model.invalid("", "metadata.name", "name or generateName is required")
    made = await model.create_endpoint(registry(request), name, _edit(obj, name), kubeapi.dry_run(request))
    return kubeapi.respond(request, endpoint_object(made), 201, warnings)


async def replace_endpoint(request: Request) -> Response:
    name = _name(request)
    obj, warnings = await kubeapi.read_object(request, NOTIFICATION_ENDPOINTS, COMPONENTS, name)
    expected = kubeapi.expected_version(obj)
    made = await model.replace_endpoint(registry(request), name, _edit(obj, name), expected, kubeapi.dry_run(request))
    return kubeapi.respond(request, endpoint_object(made), 200, warnings)


async def patch_endpoint(request: Request) -> Response:
    name, reg = _name(request), registry(request)
    body = await kubeapi.raw_body(request)
    current = await model.get_endpoint(reg, name)
    if current.source == model.CONFIG:  # before the patch is applied: no other problem to report first
        raise model.managed_in_config(name)
    schema = COMPONENTS[NOTIFICATION_ENDPOINTS.schema]
    patched = apply_patch(endpoint_object(current), body, request.headers.get("content-type"), schema, COMPONENTS)
    warnings = kubeapi.validate_fields(request, patched, NOTIFICATION_ENDPOINTS, COMPONENTS, name)
    # A patch naming no version applies to the one read above (a change meanwhile is a 409).
    patched.setdefault("metadata", {}).setdefault("resourceVersion", str(current.resource_version))
    expected = kubeapi.expected_version(patched)
    made = await model.replace_endpoint(reg, name, _edit(patched, name), expected, kubeapi.dry_run(request))
    return kubeapi.respond(request, endpoint_object(made), 200, warnings)


async def delete_endpoint(request: Request) -> Response:
    name = _name(request)
    options = await kubeapi.delete_options(request, NOTIFICATION_ENDPOINTS, name)
    gone = await model.delete_endpoint(registry(request), name, options.resource_version, options.uid, options.dry_run)
    return kubeapi.respond(request, deleted_status(name, model.GROUP, model.RESOURCE, gone.uid))


ROUTES = [
    RouteSpec(
        PATH,
        "notificationendpoints",
        {
            "GET": (list_endpoints, cluster("list", model.RESOURCE)),
            "POST": (create_endpoint, cluster("create", model.RESOURCE)),
        },
    ),
    RouteSpec(
        f"{PATH}/{{name}}",
        "notificationendpoint",
        {
            "GET": (get_endpoint, cluster("get", model.RESOURCE)),
            "PUT": (replace_endpoint, cluster("update", model.RESOURCE)),
            "PATCH": (patch_endpoint, cluster("patch", model.RESOURCE)),
            "DELETE": (delete_endpoint, cluster("delete", model.RESOURCE)),
        },
    ),
]
