"""Auth for in-process apps: accounts made through the app's AuthStore, and clients that
authenticate the ways real clients do (static Basic/Bearer credentials, or the Docker token dance
against GET /openshift/token); the `okura auth` CLI run against an app's database."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import re
import sys
from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import Any

import httpx

# Generous brute-force limits, so the tests that present bad credentials on purpose are never
# slowed down; test_security and test_login_limits build apps with small limits to test the limiter.
AUTH: dict[str, Any] = {"enabled": True, "slow_after": 10_000, "max_failures": 100_000}
BASE_URL = "http://registry"
KINDS = ("basic-token", "basic-password", "bearer-token", "jwt")

_PARAM_RE = re.compile(r'(\w+)="([^"]*)"')
_REPO_PATH_RE = re.compile(r"^/v2/(.+?)/(?:manifests|blobs|tags|referrers)/")


def parse_challenge(header: str | None) -> dict[str, str] | None:
    """`Bearer realm="…",service="…",scope="…"` -> its parameters; None unless a Bearer challenge."""
    if not header or not header.lower().startswith("bearer "):
        return None
    return dict(_PARAM_RE.findall(header))


def basic(user: str, secret: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{secret}".encode()).decode()


def _resource(path: str) -> str:
    m = _REPO_PATH_RE.match(path)
    return f"repository:{m.group(1)}" if m else path


class TokenDance(httpx.Auth):
    """What docker, podman and containerd do: send the request with the bearer token held for its
    resource; on a 401 Bearer challenge fetch a token from the realm (Basic credentials, the
    challenge's service and scopes, plus the actions already wanted on that resource) and retry
    once. Without a username it fetches anonymous tokens."""

    requires_response_body = True

    def __init__(self, username: str | None = None, password: str | None = None):
        self.username = username
        self.password = password
        self.tokens: dict[str, str] = {}  # resource (repository:NAME or a path) -> bearer token
        self.wanted: dict[str, set[str]] = {}  # "type:name" -> actions asked for so far
        self.fetches: list[list[str]] = []  # the scopes of every token request made
        self.last_token: str | None = None

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        resource = _resource(request.url.path)
        token = self.tokens.get(resource)
        if token:
            request.headers["Authorization"] = f"Bearer {token}"
        response = yield request
        challenge = parse_challenge(response.headers.get("www-authenticate"))
        if response.status_code != 401 or challenge is None or "realm" not in challenge:
            return
        scopes = []
        for scope in challenge.get("scope", "").split():
            target, _, actions = scope.rpartition(":")
            wanted = self.wanted.setdefault(target, set())
            wanted.update(a for a in actions.split(",") if a)
            scopes.append(f"{target}:{','.join(sorted(wanted))}")
        params = [("service", challenge.get("service", "")), *(("scope", s) for s in scopes)]
        token_request = httpx.Request("GET", challenge["realm"], params=params)
        if self.username is not None:
            token_request.headers["Authorization"] = basic(self.username, self.password or "")
        self.fetches.append(scopes)
        token_response = yield token_request
        if token_response.status_code != 200:
            return  # the caller sees the token endpoint's error
        token = token_response.json()["token"]
        self.tokens[resource] = self.last_token = token
        request.headers["Authorization"] = f"Bearer {token}"
        yield request


@dataclass
class Person:
    """A user or service account with a long-lived token (and, for users, maybe a password)."""

    name: str
    token: str
    password: str | None = None
    token_id: str = ""


class Accounts:
    """Users, service accounts, tokens and role bindings, made directly through the app's store."""

    def __init__(self, app: Any):
        self.app = app
        self.controller = app.app.state.runtime.access
        self.store = self.controller.store

    async def user(self, name: str, *roles: tuple[str, str | None], password: str | None = None) -> Person:
        await self.store.create_user(name, password)
        for role, namespace in roles:
            await self.bind(role, name, namespace)
        secret, info = await self.store.create_token(name)
        return Person(name, secret, password, info.id)

    async def service_account(self, text: str, *roles: tuple[str, str | None]) -> Person:
        subject = await self.store.create_service_account(text)
        for role, namespace in roles:
            await self.bind(role, subject, namespace)
        secret, info = await self.store.create_token(subject)
        return Person(subject, secret, None, info.id)

    async def bind(self, role: str, subject: str, namespace: str | None = None) -> None:
        await self.store.add_role(role, subject, namespace)
        self.controller.authorizer.changed()

    async def unbind(self, role: str, subject: str, namespace: str | None = None) -> None:
        await self.store.remove_role(role, subject, namespace)
        self.controller.authorizer.changed()

    async def make_public(self, namespace: str) -> None:
        await self.bind("registry-viewer", "system:unauthenticated", namespace)


Connect = Callable[..., httpx.AsyncClient]


def login(connect: Connect, app: Any, person: Person, kind: str) -> httpx.AsyncClient:
    """A client presenting `person`'s credentials as `kind` (one of KINDS)."""
    if kind == "basic-token":
        return connect(app, headers={"Authorization": basic("whatever", person.token)})
    if kind == "basic-password":
        assert person.password, f"{person.name} has no password"
        return connect(app, headers={"Authorization": basic(person.name, person.password)})
    if kind == "bearer-token":
        return connect(app, headers={"Authorization": f"Bearer {person.token}"})
    if kind == "jwt":
        return connect(app, auth=TokenDance("whatever", person.token))
    raise ValueError(kind)


def _cli_env(app: Any) -> dict[str, str]:
    config = app.app.state.runtime.config
    data = {"data_dir": config.data_dir, "database": {"url": config.database_url}}
    return {**os.environ, "OKURA_CONFIG_JSON": json.dumps(data)}


async def okura_cli(app: Any, *args: str) -> tuple[int, str, str]:
    """`okura auth ARGS` in another process, on the app's data dir and database: (exit code,
    stdout, stderr)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "registry",
        "auth",
        *args,
        env=_cli_env(app),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await proc.communicate()
    return proc.returncode or 0, out.decode(), err.decode()
