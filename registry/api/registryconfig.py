"""The registry's Config resource, as OpenShift's API serves it (cluster-admins only):

GET    /apis/imageregistry.operator.openshift.io/v1/configs           list or watch (the one object)
GET    /apis/imageregistry.operator.openshift.io/v1/configs/cluster
PUT    ... a whole object, JSON or YAML (`status` is ignored; metadata.resourceVersion is a precondition)
PATCH  ... merge, JSON or strategic patch (application/json is taken as a merge patch too)

Any other name is NotFound. A change is in effect in the process that stores it at once, in
the other replicas through the change feed (registry/model/registry_config.py).
"""

from __future__ import annotations

import copy
from datetime import datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from auth.access import Access
from registry.api import kubeapi, objects
from registry.api.routing import RouteSpec, cluster_check, registry
from registry.errors import ResourceNotFound
from registry.kube import operator_v1
from registry.kube.operator_v1 import CONFIGS
from registry.kube.patches import MERGE, apply_patch, media_type
from registry.model import registry_config as model
from registry.model.changes import LoggedChange
from registry.model.registry_config_spec import GROUP, NAME, PLURAL

COLLECTION = CONFIGS.collection_path(None)
COMPONENTS = operator_v1.COMPONENTS

read_access = cluster_check("get", PLURAL, Access("registry", PLURAL, "get"))
write_access = cluster_check("update", PLURAL, Access("registry", PLURAL, "*"))


def _row(obj: dict[str, Any]) -> list[Any]:
    return [obj["metadata"]["name"], objects.short_age(datetime.fromisoformat(obj["metadata"]["creationTimestamp"]))]


def _check_name(request: Request) -> None:
    name = request.path_params["name"]
    if name != NAME:
        raise ResourceNotFound(PLURAL, GROUP, name)


def _answer(request: Request, obj: dict[str, Any], warnings: list[str] | None = None) -> Response:
    if kubeapi.wants_table(request):
        return kubeapi.respond(request, kubeapi.table(CONFIGS, [(_row(obj), obj)], None))
    return kubeapi.respond(request, obj, 200, warnings or ())


async def list_configs(request: Request) -> Response:
    options = kubeapi.list_options(request)
    reg = registry(request)
    obj = await model.current_object(reg)
    pairs = [(obj, _row(obj))]
    if options.watch:
        start = await kubeapi.watch_start(request, options)
        initial = pairs if not options.resource_version else []

        async def render(logged: list[LoggedChange]) -> list[tuple[LoggedChange, dict[str, Any], list[Any]]]:
            current = await model.current_object(reg)
            return [(c, copy.deepcopy(current), _row(current)) for c in logged]

        return kubeapi.watch_answer(request, CONFIGS, options, start, [PLURAL], render, initial)
    return kubeapi.list_answer(request, CONFIGS, pairs, int(obj["metadata"]["resourceVersion"]), options)


async def get_config(request: Request) -> Response:
    _check_name(request)
    return _answer(request, await model.current_object(registry(request)))


async def put_config(request: Request) -> Response:
    _check_name(request)
    body, warnings = await kubeapi.read_object(request, CONFIGS, COMPONENTS, NAME)
    reg = registry(request)
    if kubeapi.dry_run(request):
        return _answer(request, await model.preview_object(reg, body, kubeapi.expected_version(body)), warnings)
    await model.apply_object(reg, body, kubeapi.expected_version(body))
    return _answer(request, await model.current_object(reg), warnings)


async def patch_config(request: Request) -> Response:
    _check_name(request)
    raw = await kubeapi.raw_body(request)
    content_type = request.headers.get("content-type")
    if media_type(content_type) == "application/json":  # taken as a merge patch, as for the ImagePruner
        content_type = MERGE
    warnings: list[str] = []

    def apply(obj: dict[str, Any]) -> Any:
        patched = apply_patch(obj, raw, content_type, COMPONENTS[CONFIGS.schema], COMPONENTS)
        warnings[:] = kubeapi.validate_fields(request, patched, CONFIGS, COMPONENTS, NAME)
        return patched

    reg = registry(request)
    if kubeapi.dry_run(request):
        patched = apply(model.editable_object(await model.get_state(reg)))
        return _answer(request, await model.preview_object(reg, patched), warnings)
    await model.patch_object(reg, apply)
    return _answer(request, await model.current_object(reg), warnings)


ROUTES = [
    RouteSpec(COLLECTION, "registryconfigs", {"GET": (list_configs, read_access)}),
    RouteSpec(
        f"{COLLECTION}/{{name}}",
        "registryconfig",
        {
            "GET": (get_config, read_access),
            "PUT": (put_config, write_access),
            "PATCH": (patch_config, write_access),
        },
    ),
]
