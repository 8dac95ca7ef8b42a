"""The access-management API for cluster-admins (the same operations as `okura auth`).

GET/POST        /admin/v1/users                 {"name", "password"?}
GET/POST        /admin/v1/serviceaccounts       {"name": "NS/NAME"}
GET/POST        /admin/v1/tokens                {"subject", "expires"?, "description"?}
DELETE          /admin/v1/tokens/{id}
GET/POST/DELETE /admin/v1/rolebindings          {"role", "subject", "namespace"?}
GET             /admin/v1/can-i?verb=&resource=&namespace=&as=
GET             /admin/v1/who-can?verb=&resource=&namespace=
"""

from __future__ import annotations

import json
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from auth.access import Access
from auth.policy import Check
from auth.roles import RESOURCES, VERBS
from auth.store import Conflict, NotFound
from auth.subjects import SubjectInvalid, identity_for, parse_subject
from registry.api.responses import empty
from registry.api.routing import RouteSpec
from registry.config import parse_duration
from registry.errors import RegistryError, RequestInvalid


class AdminNotFound(RegistryError):
    code, status, default_message = "NOT_FOUND", 404, "not found"


class AdminConflict(RegistryError):
    code, status, default_message = "CONFLICT", 409, "already exists"


def admin(request: Request) -> list[Access]:
    return [Access("registry", "admin", "*")]


def _json(data: Any, status: int = 200) -> Response:
    return Response(json.dumps(data).encode(), status_code=status, media_type="application/json")


async def _body(request: Request) -> dict[str, Any]:
    raw = await request.body()
    if len(raw) > 65536:
        raise RequestInvalid("request body too large")
    try:
        data = json.loads(raw or b"{}")
    except ValueError:
        raise RequestInvalid("request body is not JSON") from None
    if not isinstance(data, dict):
        raise RequestInvalid("request body must be a JSON object")
    return data


def _field(data: dict[str, Any], key: str, required: bool = True) -> Any:
    value = data.get(key)
    if value is None and required:
        raise RequestInvalid(f"missing field {key!r}")
    if value is not None and not isinstance(value, str):
        raise RequestInvalid(f"field {key!r} must be a string")
    return value


def _controller(request: Request) -> Any:
    return request.app.state.access


async def _changed(request: Request) -> None:
    _controller(request).authorizer.changed()


def _translate(fn: Any) -> Any:
    async def wrapped(request: Request) -> Response:
        try:
            return await fn(request)
        except (SubjectInvalid, KeyError, ValueError) as e:
            raise RequestInvalid(str(e).strip("'\"")) from None
        except NotFound as e:
            raise AdminNotFound(str(e)) from None
        except Conflict as e:
            raise AdminConflict(str(e)) from None

    return wrapped


@_translate
async def users(request: Request) -> Response:
    store = _controller(request).store
    if request.method == "GET":
        return _json({"users": await store.list_users()})
    data = await _body(request)
    await store.create_user(_field(data, "name"), _field(data, "password", required=False))
    return _json({"name": data["name"]}, 201)


@_translate
async def service_accounts(request: Request) -> Response:
    store = _controller(request).store
    if request.method == "GET":
        return _json({"serviceaccounts": await store.list_service_accounts()})
    subject = await store.create_service_account(_field(await _body(request), "name"))
    return _json({"subject": subject}, 201)


@_translate
async def tokens(request: Request) -> Response:
    store = _controller(request).store
    if request.method == "GET":
        subject = request.query_params.get("subject")
        return _json({"tokens": [t.as_json() for t in await store.list_tokens(subject)]})
    data = await _body(request)
    expires = _field(data, "expires", required=False)
    secret, info = await store.create_token(
        _field(data, "subject"), parse_duration(expires) if expires else None, _field(data, "description", False)
    )
    return _json({**info.as_json(), "token": secret}, 201)


@_translate
async def revoke_token(request: Request) -> Response:
    await _controller(request).store.revoke_token(request.path_params["token_id"])
    await _changed(request)
    return empty(204, {})


@_translate
async def role_bindings(request: Request) -> Response:
    store = _controller(request).store
    if request.method == "GET":
        return _json({"rolebindings": [b.as_json() for b in await store.bindings()]})
    data = await _body(request)
    role, subject, namespace = _field(data, "role"), _field(data, "subject"), _field(data, "namespace", False)
    if request.method == "POST":
        binding = await store.add_role(role, subject, namespace)
        await _changed(request)
        return _json(binding.as_json(), 201)
    await store.remove_role(role, subject, namespace)
    await _changed(request)
    return empty(204, {})


def _check(request: Request) -> Check:
    verb = request.query_params.get("verb", "")
    resource = request.query_params.get("resource", "")
    if verb not in VERBS or resource not in RESOURCES:
        raise RequestInvalid(f"verb must be one of {', '.join(VERBS)}; resource one of {', '.join(RESOURCES)}")
    return Check(verb, resource, request.query_params.get("namespace") or None)


@_translate
async def can_i(request: Request) -> Response:
    subject = parse_subject(request.query_params.get("as", ""))
    allowed = await _controller(request).authorizer.allowed(identity_for(subject), _check(request))
    return _json({"allowed": allowed, "subject": subject})


@_translate
async def who_can(request: Request) -> Response:
    return _json({"subjects": await _controller(request).authorizer.who_can(_check(request))})


ROUTES = [
    RouteSpec("/admin/v1/users", "admin_users", {"GET": (users, admin), "POST": (users, admin)}),
    RouteSpec(
        "/admin/v1/serviceaccounts", "admin_sas", {"GET": (service_accounts, admin), "POST": (service_accounts, admin)}
    ),
    RouteSpec("/admin/v1/tokens", "admin_tokens", {"GET": (tokens, admin), "POST": (tokens, admin)}),
    RouteSpec("/admin/v1/tokens/{token_id}", "admin_token", {"DELETE": (revoke_token, admin)}),
    RouteSpec(
        "/admin/v1/rolebindings",
        "admin_bindings",
        {"GET": (role_bindings, admin), "POST": (role_bindings, admin), "DELETE": (role_bindings, admin)},
    ),
    RouteSpec("/admin/v1/can-i", "admin_can_i", {"GET": (can_i, admin)}),
    RouteSpec("/admin/v1/who-can", "admin_who_can", {"GET": (who_can, admin)}),
]
