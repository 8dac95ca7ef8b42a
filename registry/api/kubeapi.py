"""What every Kubernetes-style route shares: reading objects (JSON or YAML, strict field
validation), list options and selectors, content negotiation (JSON, YAML, Table), and watch
streams from the change log."""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import yaml
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from registry.api.routing import registry
from registry.errors import RequestInvalid, RequestTooLarge, ResourceExpired, ResourceInvalid, UnsupportedMediaType
from registry.kube import meta
from registry.kube import protobuf as protobuf_wire
from registry.kube.resources import ResourceDef
from registry.kube.schema import Schema, check
from registry.kube.selectors import field_matcher, label_matcher
from registry.model import changes
from registry.model.changes import LoggedChange

MAX_BODY = 3 << 20  # an object; Kubernetes takes 3 MiB
# YAML aliases can make a small body expand exponentially; a document may hold this many
# nodes once expanded (an image stream with thousands of tags holds far fewer).
MAX_YAML_NODES = 250_000
_SECONDS_RE = re.compile(r"[0-9]{1,6}")
TABLE_TYPE = "as=table"
BOOKMARK_SECONDS = 10.0  # a quiet watch with bookmarks allowed gets one this often
DEFAULT_WATCH_SECONDS = 1800.0
FIELDS = ("metadata.name", "metadata.namespace")


def registry_host(request: Request) -> str:
    """The host image references start with: http.base_url's, else the request's Host."""
    base_url = registry(request).config.http.base_url
    if base_url:
        return urlsplit(base_url).netloc or base_url.rstrip("/")
    return request.headers.get("host") or request.url.netloc


# -- reading objects -------------------------------------------------------------------------


async def raw_body(request: Request) -> bytes:
    too_large = RequestTooLarge(f"the request body is larger than {MAX_BODY} bytes")
    declared = request.headers.get("content-length", "")
    if declared.isascii() and declared.isdigit() and int(declared) > MAX_BODY:
        raise too_large
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_BODY:
            raise too_large
    if not body.strip():
        raise RequestInvalid("the request body is empty")
    return body


def parse_document(raw: bytes, content_type: str | None, protobuf: protobuf_wire.Message | None = None) -> Any:
    kind = (content_type or "").split(";")[0].strip().lower()
    if kind == protobuf_wire.MEDIA_TYPE and protobuf is not None:
        try:
            return protobuf_wire.decode_object(raw, protobuf)
        except (protobuf_wire.ProtobufError, RecursionError) as e:
            raise RequestInvalid(f"the request body is not a valid protobuf object: {e}") from None
    if kind.endswith("yaml"):
        try:
            return _load_yaml(raw)
        except (yaml.YAMLError, ValueError, RecursionError) as e:
            raise RequestInvalid(f"the request body is not valid YAML: {str(e)[:300]}") from None
    if kind and not kind.endswith("json"):
        raise UnsupportedMediaType(f"unsupported content type {kind!r}: send application/json or application/yaml")
    try:
        return json.loads(raw)
    except (ValueError, RecursionError):
        raise RequestInvalid("the request body is not valid JSON") from None


def _load_yaml(raw: bytes) -> Any:
    """One YAML document (safe types only), refused before it is built when its aliases
    would expand it past MAX_YAML_NODES."""
    loader = yaml.SafeLoader(raw)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        if _expanded_size(node, {}) > MAX_YAML_NODES:
            raise ValueError(f"the document expands to more than {MAX_YAML_NODES} nodes (through its aliases)")
        return loader.construct_document(node)
    finally:
        loader.dispose()


def _expanded_size(node: yaml.Node, sizes: dict[int, int]) -> int:
    """How many nodes `node` stands for once its aliases are expanded; an aliased node is
    measured once (`sizes`), so this is linear in the document, not in its expansion."""
    known = sizes.get(id(node))
    if known is not None:
        return known
    size = 1
    if isinstance(node, yaml.SequenceNode):
        size += sum(_expanded_size(child, sizes) for child in node.value)
    elif isinstance(node, yaml.MappingNode):
        size += sum(_expanded_size(k, sizes) + _expanded_size(v, sizes) for k, v in node.value)
    sizes[id(node)] = size
    return size


def validate_fields(
    request: Request, obj: Any, rd: ResourceDef, components: dict[str, Schema], name: str = ""
) -> list[str]:
    """Wrong types are always a 422 Invalid with a cause naming each path. Unknown fields
    are too under fieldValidation=Strict (the default here); Warn returns them as warnings;
    Ignore drops them silently (the stored object keeps only what the schema knows)."""
    mode = (request.query_params.get("fieldValidation") or "Strict").lower()
    if mode not in ("strict", "warn", "ignore"):
        raise RequestInvalid(f'invalid fieldValidation "{mode[:20]}": use Strict, Warn or Ignore')
    if not isinstance(obj, dict):
        raise _invalid(rd, name, [("", f"the body must be a {rd.kind} object")])
    problems = check(obj, components[rd.schema], {**meta.COMPONENTS, **components})
    unknown = [(path, m) for path, m in problems if m == "unknown field"]
    refused = problems if mode == "strict" else [p for p in problems if p[1] != "unknown field"]
    if refused:
        metadata = obj.get("metadata")
        shown = name or (str(metadata.get("name") or "")[:253] if isinstance(metadata, dict) else "")
        raise _invalid(rd, shown, refused)
    return [f'unknown field "{path}"' for path, _ in unknown] if mode == "warn" else []


def _invalid(rd: ResourceDef, name: str, problems: list[tuple[str, str]]) -> ResourceInvalid:
    causes = [
        {
            "reason": "FieldValueNotSupported" if m == "unknown field" else "FieldValueTypeInvalid",
            "message": f'unknown field "{path}"' if m == "unknown field" else m,
            "field": path,
        }
        for path, m in problems
    ]
    listed = ", ".join(f"{c['field']}: {c['message']}" if c["field"] else c["message"] for c in causes)
    message = f'{rd.kind}.{rd.group} "{name}" is invalid: {listed}'
    return ResourceInvalid(message, kind=rd.kind, group=rd.group, name=name or None, causes=causes)


async def read_object(
    request: Request, rd: ResourceDef, components: dict[str, Schema], name: str = ""
) -> tuple[dict[str, Any], list[str]]:
    obj = parse_document(await raw_body(request), request.headers.get("content-type"), rd.protobuf)
    warnings = validate_fields(request, obj, rd, components, name)
    return obj, warnings


def dry_run(request: Request) -> bool:
    values = request.query_params.getlist("dryRun")
    if any(v != "All" for v in values):
        raise RequestInvalid('dryRun must be "All"')
    return bool(values)


@dataclass(frozen=True)
class DeleteOptions:
    resource_version: int | None  # preconditions.resourceVersion
    uid: str | None  # preconditions.uid
    dry_run: bool


async def delete_options(request: Request, rd: ResourceDef, name: str) -> DeleteOptions:
    """A DELETE's options: the query's dryRun and, when the client sent a body (kubectl
    does), the DeleteOptions in it, checked like any object (wrong types are Invalid)."""
    dry = dry_run(request)
    raw = await request.body()
    if len(raw) > MAX_BODY:
        raise RequestTooLarge(f"the request body is larger than {MAX_BODY} bytes")
    if not raw.strip():
        return DeleteOptions(None, None, dry)
    body = parse_document(raw, request.headers.get("content-type") or "application/json")
    schema = meta.COMPONENTS[f"{meta.META}.DeleteOptions"]
    problems = [p for p in check(body, schema, meta.COMPONENTS) if p[1] != "unknown field"]
    if not isinstance(body, dict) or problems:
        causes = problems or [("", "the body must be a DeleteOptions object")]
        raise ResourceInvalid(
            f'{rd.kind}.{rd.group} "{name}" is invalid: ' + ", ".join(f"{f}: {m}" for f, m in causes),
            kind=rd.kind,
            group=rd.group,
            name=name,
            causes=[{"reason": "FieldValueTypeInvalid", "message": m, "field": f} for f, m in causes],
        )
    if any(v != "All" for v in body.get("dryRun") or []):
        raise RequestInvalid('dryRun must be "All"')
    preconditions = body.get("preconditions") or {}
    version = meta.parse_resource_version(preconditions.get("resourceVersion"), "preconditions.resourceVersion")
    return DeleteOptions(version, preconditions.get("uid") or None, dry or bool(body.get("dryRun")))


def expected_version(obj: dict[str, Any]) -> int | None:
    return meta.parse_resource_version((obj.get("metadata") or {}).get("resourceVersion"), "metadata.resourceVersion")


# -- answering -------------------------------------------------------------------------------


def wants_table(request: Request) -> bool:
    return TABLE_TYPE in request.headers.get("accept", "").replace(" ", "").lower()


def wants_yaml(request: Request) -> bool:
    accept = request.headers.get("accept", "").lower()
    return "yaml" in accept and "json" not in accept


def warning_header(warnings: Sequence[str]) -> str:
    """RFC 7234 warnings (code 299, as the API server sends them): quoted-strings, so quotes
    and backslashes escaped; non-ASCII would not survive a header and is replaced."""

    def quoted(text: str) -> str:
        text = text.encode("ascii", "replace").decode().replace("\\", "\\\\").replace('"', '\\"')
        return '"' + "".join(c if c.isprintable() else " " for c in text) + '"'

    return ", ".join(f"299 - {quoted(w)}" for w in warnings)


def respond(request: Request, obj: Any, status: int = 200, warnings: Sequence[str] = ()) -> Response:
    headers = {"Warning": warning_header(warnings)} if warnings else None
    if wants_yaml(request):
        body = yaml.safe_dump(obj, sort_keys=False).encode()
        return Response(body, status_code=status, media_type="application/yaml", headers=headers)
    return Response(json.dumps(obj).encode(), status_code=status, media_type="application/json", headers=headers)


def table(
    rd: ResourceDef,
    rows: Sequence[tuple[list[Any], dict[str, Any]]],
    resource_version: int | None,
    include: str = "Metadata",
) -> dict[str, Any]:
    """A meta.k8s.io/v1 Table: `kubectl get` prints its columns as they are."""
    return {
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": {"resourceVersion": str(resource_version)} if resource_version is not None else {},
        "columnDefinitions": [
            {"name": c.name, "type": c.type, "format": c.format, "description": c.description, "priority": c.priority}
            for c in rd.columns
        ],
        "rows": [{"cells": cells, "object": _row_object(obj, include)} for cells, obj in rows],
    }


def _row_object(obj: dict[str, Any], include: str) -> dict[str, Any] | None:
    if include == "None":
        return None
    if include == "Object":
        return obj
    return {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": obj.get("metadata", {})}


# -- lists -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ListOptions:
    labels: Callable[[dict[str, str]], bool]
    fields: Callable[[dict[str, str]], bool]
    limit: int | None
    start_after: str | None  # the last key of the previous page
    continue_version: int | None
    watch: bool
    resource_version: int | None
    bookmarks: bool
    timeout: float
    include: str


def list_options(request: Request) -> ListOptions:
    q = request.query_params
    watch = (q.get("watch") or "").lower() in ("true", "1")
    start_after = continue_version = None
    if q.get("continue"):
        continue_version, start_after = meta.parse_continue(q["continue"])
    timeout = q.get("timeoutSeconds")
    if timeout is not None and not _SECONDS_RE.fullmatch(timeout):
        raise RequestInvalid(f'invalid timeoutSeconds "{timeout[:20]}"')
    include = q.get("includeObject") or "Metadata"
    if include not in ("None", "Metadata", "Object"):
        raise RequestInvalid("includeObject must be None, Metadata or Object")
    return ListOptions(
        labels=label_matcher(q.get("labelSelector")),
        fields=field_matcher(q.get("fieldSelector"), FIELDS),
        limit=meta.parse_limit(q.get("limit")),
        start_after=start_after,
        continue_version=continue_version,
        watch=watch,
        resource_version=meta.parse_resource_version(q.get("resourceVersion")),
        bookmarks=(q.get("allowWatchBookmarks") or "").lower() in ("true", "1"),
        timeout=float(timeout) if timeout else DEFAULT_WATCH_SECONDS,
        include=include,
    )


def selected(obj: dict[str, Any], options: ListOptions) -> bool:
    metadata = obj.get("metadata", {})
    fields = {"metadata.name": metadata.get("name", ""), "metadata.namespace": metadata.get("namespace", "")}
    return options.labels(metadata.get("labels") or {}) and options.fields(fields)


def page(
    items: list[dict[str, Any]], options: ListOptions, resource_version: int, key: Callable[[dict[str, Any]], str]
) -> tuple[list[dict[str, Any]], str | None]:
    """The items of this page (after `continue`'s key, at most `limit`) and the next token."""
    if options.start_after is not None:
        items = [i for i in items if key(i) > options.start_after]
    if options.limit is None or len(items) <= options.limit:
        return items, None
    kept = items[: options.limit]
    return kept, meta.continue_token(options.continue_version or resource_version, key(kept[-1]))


def list_answer(
    request: Request,
    rd: ResourceDef,
    objects: list[tuple[dict[str, Any], list[Any]]],
    resource_version: int,
    options: ListOptions,
) -> Response:
    """A list (or, for kubectl, a Table) of the objects the selectors keep, paged."""
    kept = [(obj, row) for obj, row in objects if selected(obj, options)]
    by_key = {_key(obj): (obj, row) for obj, row in kept}
    items, token = page([obj for obj, _ in kept], options, resource_version, _key)
    if wants_table(request):
        out = table(rd, [(by_key[_key(o)][1], o) for o in items], resource_version, options.include)
        if token:
            out["metadata"]["continue"] = token
        return respond(request, out)
    return respond(request, meta.list_object(rd.list_kind_name, rd.api_version, items, resource_version, token))


def _key(obj: dict[str, Any]) -> str:
    metadata = obj.get("metadata", {})
    return f"{metadata.get('namespace', '')}/{metadata.get('name', '')}"


# -- watches ---------------------------------------------------------------------------------

# Renders the objects that changes name, each as (event type, object, table row), dropping
# those the caller may not see.
Renderer = Callable[[list[LoggedChange]], Awaitable[list[tuple[LoggedChange, dict[str, Any], list[Any]]]]]


async def watch_start(request: Request, options: ListOptions) -> int:
    """The version a watch follows changes after; 410 Expired when the log no longer reaches it."""
    reg = registry(request)

    def run(conn: Any) -> tuple[int, bool]:
        latest = changes.latest(conn)
        start = options.resource_version
        if start is None or start == 0:
            return latest, False
        return start, changes.expired(conn, start)

    start, gone = await reg.db.read(run)
    if gone:
        raise ResourceExpired(f"too old resource version: {start} (the change log was trimmed past it)")
    return start


def watch_answer(
    request: Request,
    rd: ResourceDef,
    options: ListOptions,
    start: int,
    resources: Sequence[str],
    render: Renderer,
    initial: list[tuple[dict[str, Any], list[Any]]] = (),  # type: ignore[assignment]
) -> Response:
    """A chunked stream of WatchEvents: the `initial` objects as ADDED (a watch without a
    version starts from the current state, as Kubernetes does), then every change after
    `start` that the selectors keep, with BOOKMARKs while quiet when the client allows them."""
    reg = registry(request)
    as_table = wants_table(request)

    def event(kind: str, obj: dict[str, Any], row: list[Any] | None) -> bytes:
        if as_table and kind != "BOOKMARK":
            obj = table(rd, [(row or [], obj)], None, options.include)
        return json.dumps({"type": kind, "object": obj}).encode() + b"\n"

    async def stream() -> AsyncIterator[bytes]:
        for obj, row in initial:
            if selected(obj, options):
                yield event("ADDED", obj, row)
        cursor = start
        deadline = time.monotonic() + options.timeout
        last_sent = time.monotonic()
        while time.monotonic() < deadline:
            sequence = reg.waiter.sequence
            previous = cursor
            logged, reached = await reg.db.read(changes.since, cursor, resources)
            if logged:
                for change, obj, row in await render(logged):
                    if selected(obj, options):
                        obj.setdefault("metadata", {})["resourceVersion"] = str(change.id)
                        yield event(change.change.type, obj, row)
                        last_sent = time.monotonic()
            cursor = reached
            if options.bookmarks and time.monotonic() - last_sent >= BOOKMARK_SECONDS:
                mark = {"kind": rd.kind, "apiVersion": rd.api_version, "metadata": {"resourceVersion": str(cursor)}}
                yield event("BOOKMARK", mark, None)
                last_sent = time.monotonic()
            if reached == previous:  # caught up: sleep until the log grows
                wait = min(BOOKMARK_SECONDS, max(deadline - time.monotonic(), 0))
                await reg.waiter.wait(sequence, wait)
            else:
                await asyncio.sleep(0)

    media = "application/json;stream=watch"
    return StreamingResponse(stream(), media_type=media, headers={"Cache-Control": "no-cache"})
