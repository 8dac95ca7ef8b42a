"""Pull secrets as the core API serves Secrets (what `kubectl create secret docker-registry`
and `kubectl apply -f secret.yaml` use):

GET    /api/v1/namespaces/{ns}/secrets            list
POST   /api/v1/namespaces/{ns}/secrets            create
GET    /api/v1/namespaces/{ns}/secrets/{name}     get
PUT    ...                                        replace (resourceVersion precondition)
PATCH  ...                                        merge, JSON or strategic patch
DELETE ...                                        delete

Only kubernetes.io/dockerconfigjson and kubernetes.io/dockercfg Secrets are kept. Every verb
is checked as itself on `secrets` in the namespace: admins of the namespace and
cluster-admins, nobody else, may see or change them.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from registry.api import kubeapi, objects
from registry.api.imagestreams import deleted_status, in_namespace, path_namespace
from registry.api.routing import RouteSpec, registry
from registry.errors import ResourceNotFound, Unsupported
from registry.kube import core_v1
from registry.kube.core_v1 import SECRETS
from registry.kube.meta import timestamp
from registry.kube.patches import apply_patch
from registry.model import changes, secrets
from registry.model.secrets import Secret

COMPONENTS = core_v1.COMPONENTS


def secret_object(secret: Secret) -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": secret.name, "namespace": secret.namespace, "uid": secret.uid}
    if secret.resource_version:
        metadata["resourceVersion"] = str(secret.resource_version)
    metadata["creationTimestamp"] = timestamp(secret.created)
    if secret.labels:
        metadata["labels"] = dict(secret.labels)
    if secret.annotations:
        metadata["annotations"] = dict(secret.annotations)
    obj: dict[str, Any] = {"kind": "Secret", "apiVersion": "v1", "metadata": metadata, "type": secret.type}
    if secret.data is not None:
        obj["data"] = {k: base64.b64encode(v).decode() for k, v in secret.data.items()}
    return obj


def _row(secret: Secret) -> list[Any]:
    return [secret.name, secret.type, len(secret.data or {}), objects.short_age(secret.created)]


def _name(request: Request) -> tuple[str, str]:
    namespace, name = path_namespace(request), request.path_params["name"]
    if not secrets.valid_name(name):
        raise ResourceNotFound(secrets.SECRETS, "", name[:256])
    return namespace, name


def _parsed(obj: dict[str, Any], namespace: str, name: str) -> tuple[str, dict[str, bytes], dict, dict]:
    """(type, data, labels, annotations) of a Secret body; `data` values are base64 and
    `stringData` plain text over them, as the API server takes them."""
    metadata = obj.get("metadata") or {}
    if metadata.get("name") not in (None, name):
        raise secrets.invalid(name, "metadata.name", f"must be {name!r}, the name in the URL")
    if metadata.get("namespace") not in (None, "", namespace):
        raise secrets.invalid(name, "metadata.namespace", f"must be {namespace!r}")
    if obj.get("kind") not in (None, "Secret") or obj.get("apiVersion") not in (None, "v1"):
        raise secrets.invalid(name, "kind", "must be Secret of apiVersion v1")
    data: dict[str, bytes] = {}
    for key, value in (obj.get("data") or {}).items():
        try:
            data[key] = base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            raise secrets.invalid(name, f"data[{key[:100]}]", "must be base64") from None
    for key, value in (obj.get("stringData") or {}).items():
        data[key] = value.encode()
    type_ = obj.get("type") or ""
    return type_, data, dict(metadata.get("labels") or {}), dict(metadata.get("annotations") or {})


async def list_secrets(request: Request) -> Response:
    namespace = path_namespace(request)
    options = kubeapi.list_options(request)
    if options.watch:
        raise Unsupported("secrets are not watched here: list them")
    reg = registry(request)
    found = await secrets.list_secrets(reg, namespace, reveal=True)
    version = await reg.db.read(changes.latest)
    pairs = [(secret_object(s), _row(s)) for s in found]
    return kubeapi.list_answer(request, SECRETS, pairs, version, options)


async def get_secret(request: Request) -> Response:
    namespace, name = _name(request)
    secret = await secrets.get_secret(registry(request), namespace, name, reveal=True)
    obj = secret_object(secret)
    if kubeapi.wants_table(request):
        include = kubeapi.list_options(request).include
        return kubeapi.respond(request, kubeapi.table(SECRETS, [(_row(secret), obj)], None, include))
    return kubeapi.respond(request, obj)


async def _write(request: Request, obj: dict[str, Any], namespace: str, name: str, create: bool,
                 warnings: list[str], status: int) -> Response:  # fmt: skip
    type_, data, labels, annotations = _parsed(obj, namespace, name)
    expected = None if create else kubeapi.expected_version(obj)
    made = await secrets.create_secret(
        registry(request), namespace, name, type_, data, labels, annotations,
        replace=not create, create=create, expected_version=expected, dry_run=kubeapi.dry_run(request),
    )  # fmt: skip
    return kubeapi.respond(request, secret_object(made), status, warnings)


async def create_secret(request: Request) -> Response:
    namespace = path_namespace(request)
    obj, warnings = await kubeapi.read_object(request, SECRETS, COMPONENTS)
    name = (obj.get("metadata") or {}).get("name")
    if not isinstance(name, str) or not name:
        raise secrets.invalid("", "metadata.name", "name or generateName is required")
    return await _write(request, obj, namespace, name, True, warnings, 201)


async def replace_secret(request: Request) -> Response:
    namespace, name = _name(request)
    obj, warnings = await kubeapi.read_object(request, SECRETS, COMPONENTS, name)
    return await _write(request, obj, namespace, name, False, warnings, 200)


async def patch_secret(request: Request) -> Response:
    namespace, name = _name(request)
    body = await kubeapi.raw_body(request)
    current = secret_object(await secrets.get_secret(registry(request), namespace, name, reveal=True))
    schema = COMPONENTS[SECRETS.schema]
    patched = apply_patch(current, body, request.headers.get("content-type"), schema, COMPONENTS)
    warnings = kubeapi.validate_fields(request, patched, SECRETS, COMPONENTS, name)
    # A patch naming no version applies to the current one (read above; a change meanwhile is a 409).
    patched.setdefault("metadata", {}).setdefault("resourceVersion", current["metadata"]["resourceVersion"])
    return await _write(request, patched, namespace, name, False, warnings, 200)


async def delete_secret(request: Request) -> Response:
    namespace, name = _name(request)
    options = await kubeapi.delete_options(request, SECRETS, name)
    gone = await secrets.delete_secret(
        registry(request), namespace, name, options.resource_version, options.uid, options.dry_run
    )
    return kubeapi.respond(request, deleted_status(name, "", "secrets", gone.uid))


ROUTES = [
    RouteSpec(
        "/api/v1/namespaces/{namespace}/secrets",
        "secrets",
        {
            "GET": (list_secrets, in_namespace("list", "secrets")),
            "POST": (create_secret, in_namespace("create", "secrets")),
        },
    ),
    RouteSpec(
        "/api/v1/namespaces/{namespace}/secrets/{name}",
        "secret",
        {
            "GET": (get_secret, in_namespace("get", "secrets")),
            "PUT": (replace_secret, in_namespace("update", "secrets")),
            "PATCH": (patch_secret, in_namespace("patch", "secrets")),
            "DELETE": (delete_secret, in_namespace("delete", "secrets")),
        },
    ),
]
