"""Shared fixtures: an Okura app per test on SQLite, on a real PostgreSQL server and on a real S3
(the session's SeaweedFS, booted in the background by the hooks below). Helpers: tests/support."""

from __future__ import annotations

import contextlib
import logging
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import pytest_asyncio

from registry.app import build_app
from registry.config import config_from_dict
from registry.runtime import open_runtime
from tests.support.auth import BASE_URL, Connect
from tests.support.backends import BACKENDS
from tests.support.postgres import create_database, drop_database, truncate_tables
from tests.support.s3 import (
    S3_BUCKET,
    needs_seaweedfs,
    shared_seaweedfs,
    start_shared_seaweedfs,
    stop_shared_seaweedfs,
)
from tests.support.seaweedfs import ACCESS_KEY, SECRET_KEY, SeaweedFS


@pytest.fixture(autouse=True)
def restore_logging():
    """Commands run in-process (`okura migrate`, the CLI tests) set up logging on the captured
    stderr of their test; a later test's log line would hit that closed stream. Put the root
    logger back after every test."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.hookimpl(trylast=True)  # after -k/-m deselection
def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config, items: list[pytest.Item]) -> None:
    """Boot the shared SeaweedFS in the background when a test to run needs it."""
    if not config.option.collectonly and any(needs_seaweedfs(item) for item in items):
        start_shared_seaweedfs()


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    stop_shared_seaweedfs()


@pytest.fixture(scope="session")
def seaweedfs() -> SeaweedFS:
    """A running single-node SeaweedFS with its S3 gateway on a free loopback port."""
    return shared_seaweedfs()


@pytest_asyncio.fixture(scope="session")
async def pg_database() -> AsyncIterator[str]:
    """A fresh PostgreSQL database for this test session; its URL."""
    url = await create_database("okura_test")
    yield url
    await drop_database(url)


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    """Where metadata and blobs live: SQLite or PostgreSQL with the filesystem driver, or
    SQLite with the S3 driver on a real SeaweedFS (blobs streamed, no redirects)."""
    return request.param


@pytest.fixture
def s3_storage(backend, request) -> dict | None:
    if backend != "s3":
        return None
    server = request.getfixturevalue("seaweedfs")
    return {
        "driver": "s3",
        "s3": {
            "bucket": S3_BUCKET,
            "endpoint_url": server.endpoint_url,
            "access_key": ACCESS_KEY,
            "secret_key": SECRET_KEY,
            "root_prefix": f"protocol-{uuid.uuid4().hex[:12]}/",
            "redirect": False,
        },
    }


@pytest.fixture
def pg_url(backend, request) -> str | None:
    return request.getfixturevalue("pg_database") if backend == "postgres" else None


@pytest_asyncio.fixture
async def make_app(tmp_path, pg_url, s3_storage):
    """Open runtimes and build apps over them, with optional config overrides (as the server
    does, without its background jobs); all are closed after the test."""
    async with contextlib.AsyncExitStack() as stack:
        opened = []

        async def factory(**overrides):
            data = {"data_dir": str(tmp_path / "data"), "log": {"access_log": False}}
            if pg_url:
                if not opened:
                    await truncate_tables(pg_url)
                data["database"] = {"url": pg_url}
            if s3_storage:
                data["storage"] = dict(s3_storage)
            for key, value in overrides.items():
                if isinstance(value, dict):
                    data.setdefault(key, {}).update(value)
                else:
                    data[key] = value
            runtime = await stack.enter_async_context(open_runtime(config_from_dict(data), serving=True))
            opened.append(runtime)
            return build_app(runtime)

        yield factory


@pytest_asyncio.fixture
async def app(make_app):
    return await make_app()


@pytest_asyncio.fixture
async def client(app) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://registry") as c:
        yield c


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
def registry_model(app):
    """The registry model behind the app (for checks below the HTTP layer)."""
    return app.app.state.runtime.registry
