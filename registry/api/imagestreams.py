"""Image streams (image.openshift.io/v1 ImageStream), as the Kubernetes API serves them:

GET    /apis/image.openshift.io/v1/imagestreams                             list or watch, all namespaces
GET    /apis/image.openshift.io/v1/namespaces/{ns}/imagestreams             list or watch (?watch=true)
POST   /apis/image.openshift.io/v1/namespaces/{ns}/imagestreams             create
GET    /apis/image.openshift.io/v1/namespaces/{ns}/imagestreams/{name}      get
PUT    ...                                                                  replace (resourceVersion precondition)
PATCH  ...                                                                  merge, JSON or strategic patch
DELETE ...                                                                  delete (images are left to the pruner)

Each verb is checked as itself on `imagestreams` in the namespace; a list across namespaces
keeps the namespaces where the caller may list (or watch).
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from auth.access import API_SCOPE, ApiAccess, Check, Needed
from registry.api import kubeapi, objects
from registry.api.routing import AccessRule, RouteSpec, access_controller, no_access, registry
from registry.errors import ResourceNotFound
from registry.kube import image_v1
from registry.kube.image_v1 import IMAGE_STREAMS
from registry.kube.patches import apply_patch
from registry.model import changes, registry_config, streams
from registry.model.changes import DELETED, LoggedChange
from registry.model.streams import MayRead, Stream, StreamEdit
from registry.names import NAME_COMPONENT_RE

PREFIX = f"/apis/{image_v1.API_VERSION}"
COMPONENTS = image_v1.COMPONENTS


def path_namespace(request: Request) -> str:
    namespace = request.path_params["namespace"]
    if not NAME_COMPONENT_RE.fullmatch(namespace):
        raise ResourceNotFound("namespaces", "", namespace[:256])
    return namespace


def in_namespace(verb: str, resource: str) -> AccessRule:
    """`verb` on `resource` in the namespace of the path (list becomes watch with ?watch=true)."""

    def rule(request: Request) -> list[Needed]:
        asked = "watch" if verb == "list" and request.query_params.get("watch") in ("true", "1") else verb
        return [ApiAccess(Check(asked, resource, path_namespace(request)), API_SCOPE)]

    return rule


def cluster(verb: str, resource: str) -> AccessRule:
    def rule(request: Request) -> list[Needed]:
        asked = "watch" if verb == "list" and request.query_params.get("watch") in ("true", "1") else verb
        return [ApiAccess(Check(asked, resource, None), API_SCOPE)]

    return rule


def may_read(request: Request) -> MayRead:
    access, identity = access_controller(request), request.state.identity

    async def check(repo: str) -> bool:
        return await access.may_read(identity, repo)

    return check


async def visible_namespaces(request: Request, resource: str, namespaces: set[str]) -> set[str]:
    """The namespaces where the caller may list (or watch) `resource`."""
    access, identity = access_controller(request), request.state.identity
    verb = "watch" if request.query_params.get("watch") in ("true", "1") else "list"
    if await access.allowed(identity, Check(verb, resource, None)):
        return namespaces
    return {ns for ns in namespaces if await access.allowed(identity, Check(verb, resource, ns))}


def _name(request: Request) -> tuple[str, str]:
    namespace, name = path_namespace(request), request.path_params["name"]
    if not streams.valid_stream_name(namespace, name):
        raise ResourceNotFound(streams.STREAMS, streams.GROUP, name[:256])
    return namespace, name


def _object(request: Request, stream: Stream, host: str | None = None) -> dict[str, Any]:
    """The ImageStream as this request sees it (its host; the public host in effect)."""
    host = host or kubeapi.registry_host(request)
    return objects.stream_object(stream, host, registry_config.public_host(registry(request)))


def _pair(request: Request, stream: Stream, host: str) -> tuple[dict[str, Any], list[Any]]:
    return _object(request, stream, host), objects.stream_row(stream, host)


# -- reading ---------------------------------------------------------------------------------


async def _list(request: Request, namespace: str | None) -> Response:
    reg, host = registry(request), kubeapi.registry_host(request)
    options = kubeapi.list_options(request)
    if options.watch:
        start = await kubeapi.watch_start(request, options)
        initial: list[tuple[dict[str, Any], list[Any]]] = []
        if not options.resource_version:
            found, _ = await streams.list_streams(reg, namespace)
            allowed = await visible_namespaces(request, streams.STREAMS, {s.namespace for s in found})
            initial = [_pair(request, s, host) for s in found if s.namespace in allowed]
        render = _renderer(request, namespace, host)
        return kubeapi.watch_answer(request, IMAGE_STREAMS, options, start, [streams.STREAMS], render, initial)
    found, version = await streams.list_streams(reg, namespace)
    if namespace is None:
        allowed = await visible_namespaces(request, streams.STREAMS, {s.namespace for s in found})
        found = [s for s in found if s.namespace in allowed]
    return kubeapi.list_answer(request, IMAGE_STREAMS, [_pair(request, s, host) for s in found], version, options)


async def list_all(request: Request) -> Response:
    return await _list(request, None)


async def list_namespace(request: Request) -> Response:
    return await _list(request, path_namespace(request))


def _renderer(request: Request, namespace: str | None, host: str) -> kubeapi.Renderer:
    reg = registry(request)

    async def render(logged: list[LoggedChange]) -> list[tuple[LoggedChange, dict[str, Any], list[Any]]]:
        wanted = [c for c in logged if namespace is None or c.change.namespace == namespace]
        allowed = await visible_namespaces(request, streams.STREAMS, {c.change.namespace or "" for c in wanted})
        wanted = [c for c in wanted if c.change.namespace in allowed]
        keys = [(c.change.namespace or "", c.change.name) for c in wanted if c.change.type != DELETED]
        current = await streams.streams_by_name(reg, keys) if keys else {}
        out = []
        for i, c in enumerate(wanted):
            stream = current.get((c.change.namespace or "", c.change.name))
            if c.change.type != DELETED and stream is not None:
                obj, row = _pair(request, stream, host)
                out.append((c, obj, row))
                continue
            # A deletion, or a change of a stream deleted since: its last state.
            snapshot = c.change.object if c.change.type == DELETED else await _final_state(reg, wanted[i:], c)
            if snapshot:
                obj = objects.deleted_stream_object(snapshot)
                out.append((c, obj, [obj["metadata"]["name"], "", "", ""]))
        return out

    return render


async def _final_state(reg: Any, later: list[LoggedChange], change: LoggedChange) -> dict[str, Any] | None:
    """The object a since-deleted stream had when it was deleted: from the DELETED change
    later in this batch, else from the log."""
    key = (change.change.namespace, change.change.name)
    for c in later:
        if c.change.type == DELETED and (c.change.namespace, c.change.name) == key:
            return c.change.object
    return await reg.db.read(changes.deleted_after, streams.STREAMS, *key, change.id)


async def get_stream(request: Request) -> Response:
    namespace, name = _name(request)
    stream = await streams.get_stream(registry(request), namespace, name)
    host = kubeapi.registry_host(request)
    obj = _object(request, stream, host)
    if kubeapi.wants_table(request):
        include = kubeapi.list_options(request).include
        out = kubeapi.table(IMAGE_STREAMS, [(objects.stream_row(stream, host), obj)], None, include)
        return kubeapi.respond(request, out)
    return kubeapi.respond(request, obj)


# -- writing ---------------------------------------------------------------------------------


async def create_stream(request: Request) -> Response:
    namespace = path_namespace(request)
    obj, warnings = await kubeapi.read_object(request, IMAGE_STREAMS, COMPONENTS)
    name = (obj.get("metadata") or {}).get("name")
    if not isinstance(name, str) or not name:
        raise _missing_name()
    edit = objects.parse_stream(obj, namespace, name)
    actor, dry = request.state.identity.name, kubeapi.dry_run(request)
    stream = await streams.create_stream(registry(request), namespace, name, edit, may_read(request), actor, dry)
    return kubeapi.respond(request, _object(request, stream), 201, warnings)


def _missing_name() -> Exception:
    problems = objects.Problems()
    problems.add("metadata.name", "name or generateName is required")
    return problems.invalid("ImageStream", "")


async def replace_stream(request: Request) -> Response:
    namespace, name = _name(request)
    obj, warnings = await kubeapi.read_object(request, IMAGE_STREAMS, COMPONENTS, name)
    edit = objects.parse_stream(obj, namespace, name)
    expected = kubeapi.expected_version(obj)
    actor, dry = request.state.identity.name, kubeapi.dry_run(request)
    stream = await streams.update_stream(
        registry(request), namespace, name, edit, expected, may_read(request), actor, dry
    )
    return kubeapi.respond(request, _object(request, stream), 200, warnings)


async def patch_stream(request: Request) -> Response:
    namespace, name = _name(request)
    reg, host = registry(request), kubeapi.registry_host(request)
    body = await kubeapi.raw_body(request)
    content_type = request.headers.get("content-type")
    warnings: list[str] = []

    def patched(stream: Stream) -> dict[str, Any]:
        obj = apply_patch(
            _object(request, stream, host), body, content_type, COMPONENTS[IMAGE_STREAMS.schema], COMPONENTS
        )
        warnings[:] = kubeapi.validate_fields(request, obj, IMAGE_STREAMS, COMPONENTS, name)
        return obj

    def edit(stream: Stream) -> StreamEdit:
        return objects.parse_stream(patched(stream), namespace, name)

    current = await streams.get_stream(reg, namespace, name)
    first = patched(current)
    edit_now = objects.parse_stream(first, namespace, name)
    dry = kubeapi.dry_run(request)
    # A patch that names another resourceVersion than the current one is a precondition (409);
    # otherwise it is applied to the latest version, again if the stream changes meanwhile.
    named = kubeapi.expected_version(first)
    actor = request.state.identity.name
    if named is not None and named != current.resource_version:
        stream = await streams.update_stream(reg, namespace, name, edit_now, named, may_read(request), actor, dry)
    else:
        stream = await streams.update_stream(reg, namespace, name, edit, None, may_read(request), actor, dry)
    return kubeapi.respond(request, _object(request, stream, host), 200, warnings)


async def delete_stream(request: Request) -> Response:
    namespace, name = _name(request)
    options = await kubeapi.delete_options(request, IMAGE_STREAMS, name)
    stream = await streams.delete_stream(
        registry(request), namespace, name, options.resource_version, options.uid, options.dry_run
    )
    return kubeapi.respond(request, deleted_status(name, streams.GROUP, "imagestreams", stream.uid))


def deleted_status(name: str, group: str, kind: str, uid: str) -> dict[str, Any]:
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Success",
        "details": {"name": name, "group": group, "kind": kind, "uid": uid},
    }


ROUTES = [
    RouteSpec(f"{PREFIX}/imagestreams", "imagestreams_all", {"GET": (list_all, no_access)}),
    RouteSpec(
        f"{PREFIX}/namespaces/{{namespace}}/imagestreams",
        "imagestreams",
        {
            "GET": (list_namespace, in_namespace("list", "imagestreams")),
            "POST": (create_stream, in_namespace("create", "imagestreams")),
        },
        image_writes=True,
    ),
    RouteSpec(
        f"{PREFIX}/namespaces/{{namespace}}/imagestreams/{{name:path}}",
        "imagestream",
        {
            "GET": (get_stream, in_namespace("get", "imagestreams")),
            "PUT": (replace_stream, in_namespace("update", "imagestreams")),
            "PATCH": (patch_stream, in_namespace("patch", "imagestreams")),
            "DELETE": (delete_stream, in_namespace("delete", "imagestreams")),
        },
        image_writes=True,
    ),
]
