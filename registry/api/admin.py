"""The access-management API (the same operations as `okura auth`). Each operation is its
own verb on its own resource, as Kubernetes RBAC has them; only cluster-admin holds users,
serviceaccounts, tokens and subjectaccessreviews, and a namespace's `admin` manages the role
bindings of its namespace (never granting more than it holds itself).

GET/POST        /admin/v1/users                 {"name", "password"?}       list/create users
GET/POST        /admin/v1/serviceaccounts       {"name": "NS/NAME"}         list/create serviceaccounts
GET/POST        /admin/v1/tokens                {"subject", "expires"?, "description"?}
DELETE          /admin/v1/tokens/{id}                                       delete tokens
GET             /admin/v1/rolebindings[?namespace=NS]                       list rolebindings (in NS)
POST/DELETE     /admin/v1/rolebindings          {"role", "subject", "namespace"?}
GET             /admin/v1/can-i?verb=&resource=&namespace=&as=              create subjectaccessreviews
GET             /admin/v1/who-can?verb=&resource=&namespace=
"""

from __future__ import annotations

import json
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from auth import grants
from auth.access import ADMIN_SCOPE, ApiAccess, Check
from auth.roles import RESOURCES, VERBS, resolve_role
from auth.store import Binding, Conflict, NotFound
from auth.subjects import SubjectInvalid, identity_for, parse_namespace, parse_subject
from registry.api.responses import empty
from registry.api.routing import AccessRule, RouteSpec, cluster_check, runtime
from registry.config import parse_duration
from registry.errors import RegistryError, RequestInvalid
from registry.runtime import AuthServices

MAX_BODY = 65536
_BODY_KEY = "okura.admin.body"


class AdminNotFound(RegistryError):
    code, status, default_message = "NOT_FOUND", 404, "not found"


class AdminConflict(RegistryError):
    code, status, default_message = "CONFLICT", 409, "already exists"


def _json(data: Any, status: int = 200) -> Response:
    return Response(json.dumps(data).encode(), status_code=status, media_type="application/json")


async def _body(request: Request) -> dict[str, Any]:
    """The JSON object in the body, read once (an access rule may need it before the handler).
    Read with a cap: access is decided after reading, so an anonymous caller must not make
    the server hold an unbounded body."""
    cached = request.scope.get(_BODY_KEY)
    if cached is not None:
        return cached
    raw = bytearray()
    async for chunk in request.stream():
        raw += chunk
        if len(raw) > MAX_BODY:
            raise RequestInvalid("request body too large")
    try:
        data = json.loads(raw or b"{}")
    except ValueError:
        raise RequestInvalid("request body is not JSON") from None
    if not isinstance(data, dict):
        raise RequestInvalid("request body must be a JSON object")
    request.scope[_BODY_KEY] = data
    return data


def _field(data: dict[str, Any], key: str, required: bool = True) -> Any:
    value = data.get(key)
    if value is None and required:
        raise RequestInvalid(f"missing field {key!r}")
    if value is not None and not isinstance(value, str):
        raise RequestInvalid(f"field {key!r} must be a string")
    return value


def _invalid(e: Exception) -> RequestInvalid:
    return RequestInvalid(str(e).strip("'\""))


async def _binding(request: Request) -> Binding:
    """The role binding named in the body, normalised (role aliases resolved)."""
    data = await _body(request)
    role, subject, namespace = _field(data, "role"), _field(data, "subject"), _field(data, "namespace", False)
    try:
        return Binding(
            resolve_role(role).name,
            parse_subject(subject),
            parse_namespace(namespace) if namespace is not None else None,
        )
    except (KeyError, SubjectInvalid) as e:
        raise _invalid(e) from None


def _namespace_param(request: Request) -> str | None:
    namespace = request.query_params.get("namespace") or None
    try:
        return parse_namespace(namespace) if namespace is not None else None
    except SubjectInvalid as e:
        raise _invalid(e) from None


def _auth(request: Request) -> AuthServices:
    return runtime(request).auth


async def _changed(request: Request) -> None:
    _auth(request).authorizer.changed()


def _translate(fn: Any) -> Any:
    async def wrapped(request: Request) -> Response:
        try:
            return await fn(request)
        except (SubjectInvalid, KeyError, ValueError) as e:
            raise _invalid(e) from None
        except NotFound as e:
            raise AdminNotFound(str(e)) from None
        except Conflict as e:
            raise AdminConflict(str(e)) from None

    return wrapped


# -- access rules --------------------------------------------------------------------------------


def admin(verb: str, resource: str) -> AccessRule:
    """A cluster-scoped operation of this API."""
    return cluster_check(verb, resource, ADMIN_SCOPE)


def list_bindings_access(request: Request) -> list[ApiAccess]:
    return grants.to_list(_namespace_param(request))


async def create_binding_access(request: Request) -> list[ApiAccess]:
    binding = await _binding(request)
    return grants.to_grant(binding.role, binding.namespace)


async def delete_binding_access(request: Request) -> list[ApiAccess]:
    return grants.to_delete((await _binding(request)).namespace)


# -- handlers ------------------------------------------------------------------------------------


@_translate
async def list_users(request: Request) -> Response:
    return _json({"users": await _auth(request).store.list_users()})


@_translate
async def create_user(request: Request) -> Response:
    data = await _body(request)
    await _auth(request).store.create_user(_field(data, "name"), _field(data, "password", required=False))
    return _json({"name": data["name"]}, 201)


@_translate
async def list_service_accounts(request: Request) -> Response:
    return _json({"serviceaccounts": await _auth(request).store.list_service_accounts()})


@_translate
async def create_service_account(request: Request) -> Response:
    subject = await _auth(request).store.create_service_account(_field(await _body(request), "name"))
    return _json({"subject": subject}, 201)


@_translate
async def list_tokens(request: Request) -> Response:
    subject = request.query_params.get("subject")
    return _json({"tokens": [t.as_json() for t in await _auth(request).store.list_tokens(subject)]})


@_translate
async def create_token(request: Request) -> Response:
    data = await _body(request)
    expires = _field(data, "expires", required=False)
    secret, info = await _auth(request).store.create_token(
        _field(data, "subject"), parse_duration(expires) if expires else None, _field(data, "description", False)
    )
    return _json({**info.as_json(), "token": secret}, 201)


@_translate
async def revoke_token(request: Request) -> Response:
    await _auth(request).store.revoke_token(request.path_params["token_id"])
    await _changed(request)
    return empty(204, {})


@_translate
async def list_bindings(request: Request) -> Response:
    bindings = await _auth(request).store.bindings(_namespace_param(request))
    return _json({"rolebindings": [b.as_json() for b in bindings]})


@_translate
async def create_binding(request: Request) -> Response:
    wanted = await _binding(request)
    binding = await _auth(request).store.add_role(wanted.role, wanted.subject, wanted.namespace)
    await _changed(request)
    return _json(binding.as_json(), 201)


@_translate
async def delete_binding(request: Request) -> Response:
    wanted = await _binding(request)
    await _auth(request).store.remove_role(wanted.role, wanted.subject, wanted.namespace)
    await _changed(request)
    return empty(204, {})


def _check(request: Request) -> Check:
    verb = request.query_params.get("verb", "")
    resource = request.query_params.get("resource", "")
    if verb not in VERBS or resource not in RESOURCES:
        raise RequestInvalid(f"verb must be one of {', '.join(VERBS)}; resource one of {', '.join(RESOURCES)}")
    return Check(verb, resource, _namespace_param(request))


@_translate
async def can_i(request: Request) -> Response:
    subject = parse_subject(request.query_params.get("as", ""))
    allowed = await _auth(request).authorizer.allowed(identity_for(subject), _check(request))
    return _json({"allowed": allowed, "subject": subject})


@_translate
async def who_can(request: Request) -> Response:
    return _json({"subjects": await _auth(request).authorizer.who_can(_check(request))})


review = admin("create", "subjectaccessreviews")

ROUTES = [
    RouteSpec(
        "/admin/v1/users",
        "admin_users",
        {"GET": (list_users, admin("list", "users")), "POST": (create_user, admin("create", "users"))},
    ),
    RouteSpec(
        "/admin/v1/serviceaccounts",
        "admin_sas",
        {
            "GET": (list_service_accounts, admin("list", "serviceaccounts")),
            "POST": (create_service_account, admin("create", "serviceaccounts")),
        },
    ),
    RouteSpec(
        "/admin/v1/tokens",
        "admin_tokens",
        {"GET": (list_tokens, admin("list", "tokens")), "POST": (create_token, admin("create", "tokens"))},
    ),
    RouteSpec("/admin/v1/tokens/{token_id}", "admin_token", {"DELETE": (revoke_token, admin("delete", "tokens"))}),
    RouteSpec(
        "/admin/v1/rolebindings",
        "admin_bindings",
        {
            "GET": (list_bindings, list_bindings_access),
            "POST": (create_binding, create_binding_access),
            "DELETE": (delete_binding, delete_binding_access),
        },
    ),
    RouteSpec("/admin/v1/can-i", "admin_can_i", {"GET": (can_i, review)}),
    RouteSpec("/admin/v1/who-can", "admin_who_can", {"GET": (who_can, review)}),
]
