"""Shared fixtures: an Okura app per test on SQLite and on a real PostgreSQL server."""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import AsyncIterator

import httpx
import pytest
import pytest_asyncio

from registry.app import build_app
from registry.config import config_from_dict
from registry.runtime import open_runtime
from tests.s3_fixtures import (  # noqa: F401 - pytest hooks and fixtures shared by every test directory
    S3_BUCKET,
    pytest_collection_modifyitems,
    pytest_sessionfinish,
    seaweedfs,
)
from tests.storage.seaweedfs import ACCESS_KEY, SECRET_KEY

PG_ADMIN_URL = os.environ.get("OKURA_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
REQUIRE_PG = os.environ.get("OKURA_TEST_REQUIRE_POSTGRES") == "1"


async def _pg_admin(sql: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(PG_ADMIN_URL, timeout=5)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


@pytest_asyncio.fixture(scope="session")
async def pg_database() -> AsyncIterator[str]:
    """A fresh PostgreSQL database for this test session; its URL."""
    name = f"okura_test_{uuid.uuid4().hex[:10]}"
    try:
        await _pg_admin(f'CREATE DATABASE "{name}"')
    except Exception as e:  # no server here
        if REQUIRE_PG:
            raise
        pytest.skip(f"PostgreSQL unavailable at {PG_ADMIN_URL}: {e}")
    base = PG_ADMIN_URL.rsplit("/", 1)[0]
    yield f"{base}/{name}"
    await _pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def _truncate_pg(url: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(url)
    try:
        tables = [
            r["tablename"]
            for r in await conn.fetch(
                "SELECT tablename FROM pg_tables WHERE schemaname='public' AND tablename <> 'alembic_version'"
            )
        ]
        if tables:
            await conn.execute("TRUNCATE " + ", ".join(f'"{t}"' for t in tables) + " RESTART IDENTITY CASCADE")
    finally:
        await conn.close()


@pytest.fixture(params=["sqlite", "postgres", "s3"])
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
                    await _truncate_pg(pg_url)
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


@pytest.fixture
def registry_model(app):
    """The registry model behind the app (for checks below the HTTP layer)."""
    return app.app.state.runtime.registry
