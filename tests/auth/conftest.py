"""Fixtures for the auth tests: an auth-enabled app, accounts made through its AuthStore, and
clients that authenticate the ways real clients do (see tests/support/auth.py)."""

from __future__ import annotations

import httpx
import pytest
import pytest_asyncio

from tests.support.auth import AUTH, Accounts, TokenDance


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
