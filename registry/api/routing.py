"""Declarative routes. Each route names the access it needs; `guarded` asks the
access controller before the handler runs. /v2/ routes name docker scopes; other
APIs name exact checks (a verb on a resource in a namespace)."""

from __future__ import annotations

import functools
import inspect
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from auth.access import Access, AccessController, ApiAccess, Check, Needed
from auth.controller import OpenShiftAccessController
from auth.subjects import ANONYMOUS
from registry.errors import PaginationNumberInvalid, RegistryReadOnly, RegistryRemoved, RequestInvalid
from registry.model import events
from registry.model.context import Registry
from registry.names import validate_digest, validate_name
from registry.runtime import Runtime

Handler = Callable[[Request], Awaitable[Response]]
# What a request needs, or None for a public route. A rule may be async (one that reads the
# request body, say); either way access is decided before the handler runs.
AccessRule = Callable[[Request], list[Needed] | Awaitable[list[Needed] | None] | None]


READS = frozenset({"GET", "HEAD"})


@dataclass(frozen=True)
class RouteSpec:
    """A path and, per method, the handler and the access it needs. `image_writes`: its
    methods other than GET and HEAD change images or tags, so the registry's read-only mode
    refuses them (default: the /v2/ routes)."""

    path: str
    name: str
    methods: dict[str, tuple[Handler, AccessRule]]
    image_writes: bool | None = None

    @property
    def image_api(self) -> bool:
        return self.path == "/v2" or self.path.startswith("/v2/")

    @property
    def writes_images(self) -> bool:
        return self.image_api if self.image_writes is None else self.image_writes


def public(request: Request) -> None:
    """No credentials needed at all (health checks, the token endpoint)."""
    return None


def no_access(request: Request) -> list[Access]:
    """Any authenticated caller (the API version check answers 401 to anonymous callers
    when auth is on, which is what makes clients log in)."""
    return []


def cluster_check(verb: str, resource: str, scope: Access) -> AccessRule:
    """An exact cluster-scoped API check; bearer JWTs must carry `scope` for it."""
    needed: list[Needed] = [ApiAccess(Check(verb, resource, None), scope)]

    def rule(request: Request) -> list[Needed]:
        return needed

    return rule


def pull(request: Request) -> list[Access]:
    return [Access("repository", repo_name(request), "pull")]


def push(request: Request) -> list[Access]:
    name = repo_name(request)
    return [Access("repository", name, "pull"), Access("repository", name, "push")]


def delete(request: Request) -> list[Access]:
    return [Access("repository", repo_name(request), "delete")]


def guarded(spec: RouteSpec) -> Handler:
    methods = spec.methods
    image_api, writes_images = spec.image_api, spec.writes_images

    async def endpoint(request: Request) -> Response:
        # Starlette answers HEAD on every GET route; without a HEAD entry, HEAD runs as GET.
        handler, access = methods.get(request.method) or methods["GET"]
        # The Config resource's states apply before credentials are asked for: they hold
        # whoever asks (distribution's read-only mode has no write routes at all).
        settings = registry(request).settings.current
        if image_api and settings.removed:
            raise RegistryRemoved()
        if writes_images and settings.read_only and request.method not in READS:
            raise RegistryReadOnly()
        needed = access(request)
        if inspect.isawaitable(needed):
            needed = await needed
        if needed is None:
            request.state.identity = ANONYMOUS
        else:
            request.state.identity = await access_controller(request).authorize(request, needed)
        events.current_request.set(functools.partial(_request_info, request))  # what its events say
        return await handler(request)

    endpoint.__name__ = spec.name
    return endpoint


def _request_info(request: Request) -> events.RequestInfo:
    identity = request.state.identity
    client = request.client
    return events.RequestInfo(
        id=request.headers.get("x-request-id") or uuid.uuid4().hex,
        addr=f"{client.host}:{client.port}" if client else "",
        host=request.headers.get("host", ""),
        method=request.method,
        useragent=request.headers.get("user-agent", ""),
        actor=None if identity.anonymous else identity.name,
    )


def build_routes(specs: list[RouteSpec]) -> list[Route]:
    return [Route(s.path, guarded(s), methods=list(s.methods), name=s.name) for s in specs]


# -- request helpers shared by the handlers ------------------------------------------------------


def runtime(request: Request) -> Runtime:
    return request.app.state.runtime


def registry(request: Request) -> Registry:
    return request.app.state.runtime.registry


def access_controller(request: Request) -> AccessController:
    return request.app.state.runtime.access


def openshift_access(request: Request) -> OpenShiftAccessController:
    """The controller of an auth-enabled server (the token and admin routes exist only there)."""
    controller = request.app.state.runtime.access
    assert isinstance(controller, OpenShiftAccessController), "route mounted without auth"
    return controller


def repo_name(request: Request) -> str:
    name = request.path_params["name"]
    cached = request.scope.get("okura.repo")
    if cached != name:
        validate_name(name)
        request.scope["okura.repo"] = name
    return name


def path_digest(request: Request, key: str = "digest") -> str:
    return validate_digest(request.path_params[key])


def content_length(request: Request) -> int | None:
    value = request.headers.get("content-length")
    if value is None:
        return None
    try:
        length = int(value)
    except ValueError:
        raise RequestInvalid("Content-Length is not a number") from None
    if length < 0:
        raise RequestInvalid("Content-Length is negative")
    return length


def pagination(request: Request, maximum: int) -> tuple[int, str | None]:
    """`n` and `last` from the query. Without `n`, or with a larger one, a page holds
    `maximum` entries and the Link header tells the client where to continue."""
    raw = request.query_params.get("n")
    limit = maximum
    if raw is not None and raw != "":
        try:
            limit = int(raw)
        except ValueError:
            raise PaginationNumberInvalid(f"n must be a non-negative integer, not {raw[:20]!r}") from None
        if limit < 0:
            raise PaginationNumberInvalid("n must be a non-negative integer")
        limit = min(limit, maximum)
    return limit, request.query_params.get("last") or None


def next_link(path: str, limit: int | None, last: str) -> str:
    from urllib.parse import urlencode

    query = urlencode({"last": last, **({"n": limit} if limit is not None else {})})
    return f'<{path}?{query}>; rel="next"'
