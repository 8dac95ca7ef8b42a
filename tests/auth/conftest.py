"""Fixtures for the auth tests: an auth-enabled app, accounts made through its AuthStore, and
clients that authenticate the ways real clients do (see tests/support/auth.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import pytest_asyncio

from tests.support.auth import AUTH, BASE_URL, Accounts, Connect, TokenDance


@pytest.fixture(autouse=True)
def cheap_password_hashes(monkeypatch):
    """scrypt at N=2**15 costs ~50 ms per login; hashes made here use N=2**10 (the parameters are
    stored in each hash, so verification follows them and stays the real code path)."""
    monkeypatch.setattr("auth.passwords._N", 2**10)
    monkeypatch.setattr("auth.passwords._DUMMY", None)


@pytest_asyncio.fixture
async def auth_app(make_app):
    """An app with OpenShift-style auth on (SQLite and PostgreSQL)."""
    return await make_app(auth=AUTH)


@pytest.fixture
def accounts(auth_app) -> Accounts:
    return Accounts(auth_app)


@pytest_asyncio.fixture
async def connect() -> AsyncIterator[Connect]:
    """`connect(app, auth=None, headers=None, remote="127.0.0.1")`: an httpx client bound to the
    ASGI app (as client address `remote`); all are closed after the test."""
    opened: list[httpx.AsyncClient] = []

    def factory(
        app: Any, auth: httpx.Auth | None = None, headers: dict[str, str] | None = None, remote: str = "127.0.0.1"
    ) -> httpx.AsyncClient:
        transport = httpx.ASGITransport(app=app, client=(remote, 40000))
        c = httpx.AsyncClient(transport=transport, base_url=BASE_URL, auth=auth, headers=headers)
        opened.append(c)
        return c

    yield factory
    for c in opened:
        await c.aclose()


@pytest.fixture
def raw(auth_app, connect) -> httpx.AsyncClient:
    """A client without credentials and without any auth handling."""
    return connect(auth_app)


@pytest.fixture
def anonymous(auth_app, connect) -> httpx.AsyncClient:
    """A client without credentials that does the token dance (anonymous tokens)."""
    return connect(auth_app, auth=TokenDance())


@pytest_asyncio.fixture
async def root(auth_app, accounts, connect) -> httpx.AsyncClient:
    """A cluster-admin with a raw bearer token (seeds content)."""
    person = await accounts.user("root", ("cluster-admin", None))
    return connect(auth_app, headers={"Authorization": f"Bearer {person.token}"})
