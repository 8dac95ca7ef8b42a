"""Image stream tags, image stream images and images (image.openshift.io/v1):

GET    /apis/image.openshift.io/v1/imagestreamtags                              list or watch, all namespaces
GET    /apis/image.openshift.io/v1/namespaces/{ns}/imagestreamtags              list or watch
POST   /apis/image.openshift.io/v1/namespaces/{ns}/imagestreamtags              create NAME:TAG
GET    /apis/image.openshift.io/v1/namespaces/{ns}/imagestreamtags/{name:tag}   get
PUT    ...                                                                      point the tag elsewhere
PATCH  ...
DELETE ...                                                                      the tag and its history
GET    /apis/image.openshift.io/v1/namespaces/{ns}/imagestreamimages/{name@digest}
GET    /apis/image.openshift.io/v1/images                                       list or watch (cluster-wide)
GET    /apis/image.openshift.io/v1/images/{digest}
DELETE /apis/image.openshift.io/v1/images/{digest}                              only if no stream references it
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from registry.api import kubeapi, objects
from registry.api.imagestreams import (
    cluster,
    deleted_status,
    in_namespace,
    may_read,
    path_namespace,
    visible_namespaces,
)
from registry.api.routing import RouteSpec, no_access, registry
from registry.errors import ResourceConflict, ResourceNotFound, Unsupported
from registry.kube import image_v1
from registry.kube.image_v1 import IMAGE_STREAM_TAGS, IMAGES
from registry.kube.patches import apply_patch
from registry.model import images, streams
from registry.model.changes import DELETED, LoggedChange
from registry.model.streams import Stream, TagReference
from registry.names import TAG_RE

PREFIX = f"/apis/{image_v1.API_VERSION}"
COMPONENTS = image_v1.COMPONENTS


def _tag_name(request: Request) -> tuple[str, str, str]:
    """(namespace, stream, tag) of a NAME:TAG in the path."""
    namespace, name = path_namespace(request), request.path_params["name"]
    stream, sep, tag = name.rpartition(":")
    if not sep or not TAG_RE.fullmatch(tag) or not streams.valid_stream_name(namespace, stream):
        raise ResourceNotFound(streams.STREAM_TAGS, streams.GROUP, name[:256])
    return namespace, stream, tag


def _pairs(stream: Stream, host: str) -> list[tuple[dict[str, Any], list[Any]]]:
    """Every tag of a stream (status tags, and spec tags not yet pointing anywhere)."""
    names = sorted({t.tag for t in stream.status_tags} | {t.name for t in stream.spec_tags})
    return [(objects.stream_tag_object(stream, t, None, host), objects.stream_tag_row(stream, t, host)) for t in names]


# -- image stream tags -----------------------------------------------------------------------


async def _list(request: Request, namespace: str | None) -> Response:
    reg, host = registry(request), kubeapi.registry_host(request)
    options = kubeapi.list_options(request)
    found, version = await streams.list_streams(reg, namespace)
    allowed = await visible_namespaces(request, streams.STREAM_TAGS, {s.namespace for s in found})
    pairs = [pair for s in found if s.namespace in allowed for pair in _pairs(s, host)]
    if options.watch:
        start = await kubeapi.watch_start(request, options)
        initial = pairs if not options.resource_version else []
        render = _tag_renderer(request, namespace, host)
        return kubeapi.watch_answer(request, IMAGE_STREAM_TAGS, options, start, [streams.STREAM_TAGS], render, initial)
    return kubeapi.list_answer(request, IMAGE_STREAM_TAGS, pairs, version, options)


async def list_all(request: Request) -> Response:
    return await _list(request, None)


async def list_namespace(request: Request) -> Response:
    return await _list(request, path_namespace(request))


def _tag_renderer(request: Request, namespace: str | None, host: str) -> kubeapi.Renderer:
    reg = registry(request)

    async def render(logged: list[LoggedChange]) -> list[tuple[LoggedChange, dict[str, Any], list[Any]]]:
        wanted = [c for c in logged if namespace is None or c.change.namespace == namespace]
        allowed = await visible_namespaces(request, streams.STREAM_TAGS, {c.change.namespace or "" for c in wanted})
        wanted = [c for c in wanted if c.change.namespace in allowed]
        keys = {(c.change.namespace or "", c.change.name.rpartition(":")[0]) for c in wanted}
        current = await streams.streams_by_name(reg, list(keys)) if keys else {}
        out = []
        for c in wanted:
            stream_name, _, tag = c.change.name.rpartition(":")
            stream = current.get((c.change.namespace or "", stream_name))
            exists = stream is not None and (stream.status_tag(tag) or stream.spec_tag(tag)) is not None
            if c.change.type != DELETED and exists:
                assert stream is not None
                obj = objects.stream_tag_object(stream, tag, None, host)
                out.append((c, obj, objects.stream_tag_row(stream, tag, host)))
                continue
            # A deletion, or a change of a tag deleted since: only its name is left.
            obj = {
                "kind": "ImageStreamTag",
                "apiVersion": image_v1.API_VERSION,
                "metadata": {"name": c.change.name, "namespace": c.change.namespace},
            }
            out.append((c, obj, [c.change.name, "", ""]))
        return out

    return render


async def _tag_image(request: Request, stream: Stream, tag: str) -> images.Image | None:
    status = stream.status_tag(tag)
    if status is None or not status.items:
        return None
    try:
        return await images.get_image(registry(request), status.items[0].image, None)
    except ResourceNotFound:
        return None


async def get_tag(request: Request) -> Response:
    namespace, stream_name, tag = _tag_name(request)
    stream = await streams.get_stream(registry(request), namespace, stream_name)
    if stream.status_tag(tag) is None and stream.spec_tag(tag) is None:
        raise ResourceNotFound(streams.STREAM_TAGS, streams.GROUP, f"{stream_name}:{tag}")
    host = kubeapi.registry_host(request)
    image = await _tag_image(request, stream, tag)
    obj = objects.stream_tag_object(stream, tag, image, host)
    if kubeapi.wants_table(request):
        row = objects.stream_tag_row(stream, tag, host)
        include = kubeapi.list_options(request).include
        return kubeapi.respond(request, kubeapi.table(IMAGE_STREAM_TAGS, [(row, obj)], None, include))
    return kubeapi.respond(request, obj)


def _parse_tag(obj: dict[str, Any], namespace: str, name: str, tag: str) -> TagReference:
    problems = objects.Problems()
    meta = obj.get("metadata") or {}
    if meta.get("name") not in (None, name):
        problems.add("metadata.name", f"must be {name!r}, the name in the URL")
    if meta.get("namespace") not in (None, "", namespace):
        problems.add("metadata.namespace", f"must be {namespace!r}")
    data = obj.get("tag")
    ref = None
    if data is None:
        problems.add("tag", "required: the tag reference (tag.from) to point the tag at")
    else:
        ref = objects.parse_tag_reference({**data, "name": data.get("name") or tag}, "tag", problems)
        if ref is not None and ref.name != tag:
            problems.add("tag.name", f"must be {tag!r}, the tag of the name")
        if ref is not None and ref.from_kind is None:
            problems.add("tag.from", "required")
    if problems.items or ref is None:
        raise problems.invalid("ImageStreamTag", name)
    return ref


async def _write_tag(request: Request, create: bool) -> Response:
    if create:
        namespace = path_namespace(request)
    else:
        namespace, _, _ = _tag_name(request)
    path_name = "" if create else request.path_params["name"]
    obj, warnings = await kubeapi.read_object(request, IMAGE_STREAM_TAGS, COMPONENTS, path_name)
    name = (obj.get("metadata") or {}).get("name") if create else path_name
    if not isinstance(name, str) or ":" not in name:
        problems = objects.Problems()
        problems.add("metadata.name", "must be STREAM:TAG")
        raise problems.invalid("ImageStreamTag", str(name or ""))
    stream_name, _, tag = name.rpartition(":")
    if not TAG_RE.fullmatch(tag) or not streams.valid_stream_name(namespace, stream_name):
        problems = objects.Problems()
        problems.add("metadata.name", "must be STREAM:TAG with a valid stream name and tag")
        raise problems.invalid("ImageStreamTag", name)
    ref = _parse_tag(obj, namespace, name, tag)
    expected = None if create else kubeapi.expected_version(obj)
    stream = await streams.set_tag(
        registry(request), namespace, stream_name, ref, may_read(request), request.state.identity.name,
        expected, create_only=create, dry_run=kubeapi.dry_run(request),
    )  # fmt: skip
    image = await _tag_image(request, stream, tag)
    out = objects.stream_tag_object(stream, tag, image, kubeapi.registry_host(request))
    return kubeapi.respond(request, out, 201 if create else 200, warnings)


async def create_tag(request: Request) -> Response:
    return await _write_tag(request, create=True)


async def replace_tag(request: Request) -> Response:
    return await _write_tag(request, create=False)


async def patch_tag(request: Request) -> Response:
    namespace, stream_name, tag = _tag_name(request)
    reg, host = registry(request), kubeapi.registry_host(request)
    stream = await streams.get_stream(reg, namespace, stream_name)
    if stream.status_tag(tag) is None and stream.spec_tag(tag) is None:
        raise ResourceNotFound(streams.STREAM_TAGS, streams.GROUP, f"{stream_name}:{tag}")
    current = objects.stream_tag_object(stream, tag, None, host)
    if current["tag"] is None:  # a pushed tag: its reference is where it points now
        status = stream.status_tag(tag)
        digest = status.items[0].image if status and status.items else ""
        current["tag"] = {"name": tag, "from": {"kind": "ImageStreamImage", "name": f"{stream_name}@{digest}"}}
    patched = apply_patch(
        current,
        await kubeapi.raw_body(request),
        request.headers.get("content-type"),
        COMPONENTS[IMAGE_STREAM_TAGS.schema],
        COMPONENTS,
    )
    warnings = kubeapi.validate_fields(request, patched, IMAGE_STREAM_TAGS, COMPONENTS, f"{stream_name}:{tag}")
    ref = _parse_tag(patched, namespace, f"{stream_name}:{tag}", tag)
    named = kubeapi.expected_version(patched)
    expected = named if named is not None and named != stream.resource_version else None
    stream = await streams.set_tag(
        reg, namespace, stream_name, ref, may_read(request), request.state.identity.name, expected,
        dry_run=kubeapi.dry_run(request),
    )  # fmt: skip
    image = await _tag_image(request, stream, tag)
    return kubeapi.respond(request, objects.stream_tag_object(stream, tag, image, host), 200, warnings)


async def delete_tag(request: Request) -> Response:
    namespace, stream_name, tag = _tag_name(request)
    reg = registry(request)
    options = await kubeapi.delete_options(request, IMAGE_STREAM_TAGS, f"{stream_name}:{tag}")
    stream = await streams.get_stream(reg, namespace, stream_name)
    await streams.delete_tag(reg, namespace, stream_name, tag, options.resource_version, options.uid, options.dry_run)
    return kubeapi.respond(
        request, deleted_status(f"{stream_name}:{tag}", streams.GROUP, "imagestreamtags", stream.uid)
    )


# -- image stream images ---------------------------------------------------------------------


async def list_stream_images(request: Request) -> Response:
    # Image stream images are only got by name (NAME@DIGEST), as in OpenShift; a list is 405.
    raise Unsupported("the server does not allow this method on the requested resource")


async def get_stream_image(request: Request) -> Response:
    namespace, name = path_namespace(request), request.path_params["name"]
    stream_name, sep, digest = name.rpartition("@")
    if not sep or not images.is_digest_name(digest) or not streams.valid_stream_name(namespace, stream_name):
        raise ResourceNotFound("imagestreamimages", streams.GROUP, name[:256])
    reg = registry(request)
    stream = await streams.get_stream(reg, namespace, stream_name)
    repo = stream.repository

    async def only_this(candidate: str) -> bool:
        return candidate == repo

    try:
        image = await images.get_image(reg, digest, only_this)
    except ResourceNotFound:
        raise ResourceNotFound("imagestreamimages", streams.GROUP, name) from None
    return kubeapi.respond(request, objects.stream_image_object(stream, image, kubeapi.registry_host(request)))


# -- images ----------------------------------------------------------------------------------


async def list_images(request: Request) -> Response:
    reg, host = registry(request), kubeapi.registry_host(request)
    options = kubeapi.list_options(request)
    found, version = await images.list_images(reg)
    pairs = [(objects.image_object(i, host), objects.image_row(i, host)) for i in found]
    if options.watch:
        start = await kubeapi.watch_start(request, options)
        initial = pairs if not options.resource_version else []
        return kubeapi.watch_answer(
            request, IMAGES, options, start, [streams.IMAGES], _image_renderer(request, host), initial
        )
    return kubeapi.list_answer(request, IMAGES, pairs, version, options)


def _image_renderer(request: Request, host: str) -> kubeapi.Renderer:
    reg = registry(request)

    async def render(logged: list[LoggedChange]) -> list[tuple[LoggedChange, dict[str, Any], list[Any]]]:
        out = []
        for c in logged:
            if c.change.type != DELETED:
                try:
                    image = await images.get_image(reg, c.change.name, None, config=False)
                except ResourceNotFound:
                    continue
                out.append((c, objects.image_object(image, host), objects.image_row(image, host)))
            else:
                obj = {"kind": "Image", "apiVersion": image_v1.API_VERSION, "metadata": {"name": c.change.name}}
                out.append((c, obj, [c.change.name, ""]))
        return out

    return render


async def get_image(request: Request) -> Response:
    image = await images.get_image(registry(request), request.path_params["digest"], None)
    return kubeapi.respond(request, objects.image_object(image, kubeapi.registry_host(request)))


async def delete_image(request: Request) -> Response:
    digest = request.path_params["digest"]
    options = await kubeapi.delete_options(request, IMAGES, digest)
    uid = objects.image_uid(digest)
    if options.uid is not None and options.uid != uid:
        raise ResourceConflict(
            f'Operation cannot be fulfilled on images.{streams.GROUP} "{digest}": precondition failed: '
            f"UID in precondition: {options.uid}, UID in object meta: {uid}",
            kind="images",
            group=streams.GROUP,
            name=digest,
        )
    image = await images.delete_image(registry(request), digest, options.dry_run)
    return kubeapi.respond(request, deleted_status(digest, streams.GROUP, "images", objects.image_uid(image.digest)))


ROUTES = [
    RouteSpec(f"{PREFIX}/imagestreamtags", "imagestreamtags_all", {"GET": (list_all, no_access)}),
    RouteSpec(
        f"{PREFIX}/namespaces/{{namespace}}/imagestreamtags",
        "imagestreamtags",
        {
            "GET": (list_namespace, in_namespace("list", "imagestreamtags")),
            "POST": (create_tag, in_namespace("create", "imagestreamtags")),
        },
        image_writes=True,
    ),
    RouteSpec(
        f"{PREFIX}/namespaces/{{namespace}}/imagestreamtags/{{name:path}}",
        "imagestreamtag",
        {
            "GET": (get_tag, in_namespace("get", "imagestreamtags")),
            "PUT": (replace_tag, in_namespace("update", "imagestreamtags")),
            "PATCH": (patch_tag, in_namespace("patch", "imagestreamtags")),
            "DELETE": (delete_tag, in_namespace("delete", "imagestreamtags")),
        },
        image_writes=True,
    ),
    RouteSpec(
        f"{PREFIX}/namespaces/{{namespace}}/imagestreamimages",
        "imagestreamimages",
        {"GET": (list_stream_images, in_namespace("get", "imagestreamimages"))},
    ),
    RouteSpec(
        f"{PREFIX}/namespaces/{{namespace}}/imagestreamimages/{{name:path}}",
        "imagestreamimage",
        {"GET": (get_stream_image, in_namespace("get", "imagestreamimages"))},
    ),
    RouteSpec(f"{PREFIX}/images", "images", {"GET": (list_images, cluster("list", "images"))}),
    RouteSpec(
        f"{PREFIX}/images/{{digest}}",
        "image",
        {"GET": (get_image, cluster("get", "images")), "DELETE": (delete_image, cluster("delete", "images"))},
        image_writes=True,
    ),
]
