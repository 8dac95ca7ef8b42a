"""OpenAPI v3 documents per group version, as kubectl reads them: `kubectl explain` finds a
kind's schema by its x-kubernetes-group-version-kind, and `kubectl apply` validates on the
server (fieldValidation=Strict) when a kind's PATCH operation takes that parameter."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from registry.kube.meta import COMPONENTS as META_COMPONENTS
from registry.kube.meta import META
from registry.kube.patches import PATCH_TYPES
from registry.kube.resources import ResourceDef
from registry.kube.schema import REF, Schema

KUBERNETES_VERSION = "v1.32.0"


def _param(name: str, where: str, description: str, kind: str = "string", required: bool = False) -> dict[str, Any]:
    p: dict[str, Any] = {"name": name, "in": where, "description": description, "schema": {"type": kind}}
    if required:
        p["required"] = True
    return p


NAMESPACE = _param("namespace", "path", "The namespace.", required=True)
NAME = _param("name", "path", "The object's name.", required=True)
WRITE_PARAMS = [
    _param("dryRun", "query", "All: validate without storing."),
    _param("fieldManager", "query", "Ignored."),
    _param("fieldValidation", "query", "Strict (the default here): unknown fields are refused; Warn, Ignore."),
]
LIST_PARAMS = [
    _param("labelSelector", "query", "Only objects whose labels match."),
    _param("fieldSelector", "query", "Only objects whose fields match (metadata.name, metadata.namespace)."),
    _param("limit", "query", "At most this many items; `continue` fetches the rest.", "integer"),
    _param("continue", "query", "The token of the previous page."),
    _param("resourceVersion", "query", "With watch: follow changes after this version."),
    _param("watch", "query", "Stream the changes as WatchEvents.", "boolean"),
    _param("allowWatchBookmarks", "query", "Send BOOKMARK events while nothing changes.", "boolean"),
    _param("timeoutSeconds", "query", "End the watch after this long.", "integer"),
]


def _content(schema_name: str) -> dict[str, Any]:
    return {"application/json": {"schema": {"$ref": REF + schema_name}}}


def _op(r: ResourceDef, action: str, schema: str, params: list[dict[str, Any]], body: bool = False) -> dict[str, Any]:
    op: dict[str, Any] = {
        "operationId": f"{action}{r.kind}",
        "tags": [r.api_version],
        "parameters": params,
        "responses": {"200": {"description": "OK", "content": _content(schema)}},
        "x-kubernetes-action": action,
        "x-kubernetes-group-version-kind": r.gvk,
    }
    if body:
        op["requestBody"] = {"content": _content(r.schema), "required": True}
    return op


def _paths(r: ResourceDef) -> dict[str, Any]:
    paths: dict[str, Any] = {}
    list_schema = r.schema.rsplit(".", 1)[0] + "." + r.list_kind_name
    scope = [NAMESPACE] if r.namespaced else []
    collection: dict[str, Any] = {"parameters": scope}
    if "list" in r.verbs:
        collection["get"] = _op(r, "list", list_schema, LIST_PARAMS)
    if "create" in r.verbs:
        collection["post"] = _op(r, "post", r.schema, WRITE_PARAMS, body=True)
    if len(collection) > 1:
        paths[r.collection_path("{namespace}")] = collection
    if r.namespaced and "list" in r.verbs:  # across namespaces
        paths[r.collection_path(None)] = {"parameters": [], "get": _op(r, "list", list_schema, LIST_PARAMS)}
    item: dict[str, Any] = {"parameters": [NAME, *scope]}
    if "get" in r.verbs:
        item["get"] = _op(r, "get", r.schema, [])
    if "update" in r.verbs:
        item["put"] = _op(r, "put", r.schema, WRITE_PARAMS, body=True)
    if "patch" in r.verbs:
        patch = _op(r, "patch", r.schema, WRITE_PARAMS)
        patch["requestBody"] = {
            "content": {t: {"schema": {"type": "object"}} for t in PATCH_TYPES},
            "required": True,
        }
        item["patch"] = patch
    elif "create" in r.verbs:
        # Not served. kubectl decides whether the server checks fields (?fieldValidation) by
        # finding this kind's PATCH operation; without one it falls back to /openapi/v2 and
        # refuses `kubectl create -f` of a create-only kind (an ImageStreamImport).
        marker = _op(r, "patch", r.schema, WRITE_PARAMS)
        marker["description"] = "Not served: this kind is create only. Present so clients see field validation."
        item["patch"] = marker
    if "delete" in r.verbs:
        item["delete"] = _op(r, "delete", f"{META}.Status", [_param("dryRun", "query", "All: do not delete.")])
    if len(item) > 1:
        paths[r.collection_path("{namespace}") + "/{name}"] = item
    return paths


def document(group_version: str, resources: list[ResourceDef], components: dict[str, Schema]) -> dict[str, Any]:
    """The OpenAPI v3 document of one group version."""
    schemas: dict[str, Schema] = {**META_COMPONENTS}
    for name, schema in components.items():
        schemas[name] = dict(schema)
    for r in resources:
        schemas[r.schema] = {**schemas[r.schema], "x-kubernetes-group-version-kind": [r.gvk]}
        list_name = r.schema.rsplit(".", 1)[0] + "." + r.list_kind_name
        if list_name in schemas:
            gvk = {**r.gvk, "kind": r.list_kind_name}
            schemas[list_name] = {**schemas[list_name], "x-kubernetes-group-version-kind": [gvk]}
    paths: dict[str, Any] = {}
    for r in resources:
        paths.update(_paths(r))
    return {
        "openapi": "3.0.0",
        "info": {"title": "Okura", "version": KUBERNETES_VERSION},
        "paths": paths,
        "components": {"schemas": schemas},
    }


def digest(doc: dict[str, Any]) -> str:
    return hashlib.sha512(json.dumps(doc, sort_keys=True).encode()).hexdigest()[:32].upper()


def index(documents: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """GET /openapi/v3: where each group version's document is, with its hash."""
    return {
        "paths": {
            path: {"serverRelativeURL": f"/openapi/v3/{path}?hash={digest(doc)}"}
            for path, doc in sorted(documents.items())
        }
    }
