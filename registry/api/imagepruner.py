"""The ImagePruner resource, as OpenShift's API serves it (cluster-admins only):

GET    /apis/imageregistry.operator.openshift.io/v1/imagepruners           list or watch (the one object)
GET    /apis/imageregistry.operator.openshift.io/v1/imagepruners/cluster
PUT    ... a whole object, JSON or YAML (`status` is ignored; metadata.resourceVersion is a precondition)
PATCH  ... merge, JSON or strategic patch (application/json is taken as a merge patch too)
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from auth.access import Access
from registry.api import kubeapi, objects
from registry.api.routing import RouteSpec, cluster_check, registry
from registry.kube import operator_v1
from registry.kube.operator_v1 import IMAGE_PRUNERS
from registry.kube.patches import MERGE, apply_patch, media_type
from registry.model.changes import LoggedChange
from registry.pruning import resource

PATH = f"/apis/{resource.API_VERSION}/imagepruners/{resource.NAME}"
COMPONENTS = operator_v1.COMPONENTS

read_access = cluster_check("get", "imagepruners", Access("registry", "imagepruners", "get"))
list_access = cluster_check("get", "imagepruners", Access("registry", "imagepruners", "get"))
write_access = cluster_check("update", "imagepruners", Access("registry", "imagepruners", "*"))


def _row(obj: dict[str, Any]) -> list[Any]:
    from datetime import datetime

    created = datetime.fromisoformat(obj["metadata"]["creationTimestamp"].replace("Z", "+00:00"))
    return [obj["metadata"]["name"], objects.short_age(created)]


async def _answer(request: Request, status: int = 200, warnings: list[str] | None = None) -> Response:
    obj = await resource.current_object(registry(request))
    if kubeapi.wants_table(request):
        return kubeapi.respond(request, kubeapi.table(IMAGE_PRUNERS, [(_row(obj), obj)], None), status)
    return kubeapi.respond(request, obj, status, warnings or ())


async def list_pruners(request: Request) -> Response:
    options = kubeapi.list_options(request)
    obj = await resource.current_object(registry(request))
    pairs = [(obj, _row(obj))]
    if options.watch:
        start = await kubeapi.watch_start(request, options)
        initial = pairs if not options.resource_version else []

        async def render(logged: list[LoggedChange]) -> list[tuple[LoggedChange, dict[str, Any], list[Any]]]:
            current = await resource.current_object(registry(request))
            return [(c, dict(current), _row(current)) for c in logged]

        return kubeapi.watch_answer(request, IMAGE_PRUNERS, options, start, ["imagepruners"], render, initial)
    version = int(obj["metadata"]["resourceVersion"])
    return kubeapi.list_answer(request, IMAGE_PRUNERS, pairs, version, options)


async def get_pruner(request: Request) -> Response:
    return await _answer(request)


async def put_pruner(request: Request) -> Response:
    # Bodies without a content type were taken as YAML before: keep taking them.
    content_type = request.headers.get("content-type") or "application/yaml"
    body = kubeapi.parse_document(await kubeapi.raw_body(request), content_type)
    warnings = kubeapi.validate_fields(request, body, IMAGE_PRUNERS, COMPONENTS, resource.NAME)
    if not kubeapi.dry_run(request):
        await resource.apply_object(registry(request), body, kubeapi.expected_version(body))
    return await _answer(request, 200, warnings)


async def patch_pruner(request: Request) -> Response:
    raw = await kubeapi.raw_body(request)
    content_type = request.headers.get("content-type")
    if media_type(content_type) == "application/json":  # taken as a merge patch, as before
        content_type = MERGE
    warnings: list[str] = []

    def apply(obj: dict[str, Any]) -> Any:
        patched = apply_patch(obj, raw, content_type, COMPONENTS[IMAGE_PRUNERS.schema], COMPONENTS)
        warnings[:] = kubeapi.validate_fields(request, patched, IMAGE_PRUNERS, COMPONENTS, resource.NAME)
        return patched

    if kubeapi.dry_run(request):
        apply(resource.editable_object(await resource.get_pruner(registry(request))))
    else:
        await resource.patch_object(registry(request), apply)
    return await _answer(request, 200, warnings)


ROUTES = [
    RouteSpec(f"/apis/{resource.API_VERSION}/imagepruners", "imagepruners", {"GET": (list_pruners, list_access)}),
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
