"""Throwaway PostgreSQL databases on the server at OKURA_TEST_POSTGRES_URL (trust auth as
postgres). Without a server, tests that need one are skipped, unless
OKURA_TEST_REQUIRE_POSTGRES=1 (then they fail)."""

from __future__ import annotations

import os
import uuid

import pytest

PG_ADMIN_URL = os.environ.get("OKURA_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
REQUIRE_PG = os.environ.get("OKURA_TEST_REQUIRE_POSTGRES") == "1"


async def pg_admin(sql: str) -> None:
    """Run one statement on the server's admin database."""
    import asyncpg

    conn = await asyncpg.connect(PG_ADMIN_URL, timeout=5)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


async def create_database(prefix: str) -> str:
    """A fresh database named PREFIX_<random>; its URL. Skips the test without a server."""
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    try:
        await pg_admin(f'CREATE DATABASE "{name}"')
    except Exception as e:  # no server here
        if REQUIRE_PG:
            raise
        pytest.skip(f"PostgreSQL unavailable at {PG_ADMIN_URL}: {e}")
    return f"{PG_ADMIN_URL.rsplit('/', 1)[0]}/{name}"


async def drop_database(url: str) -> None:
    name = url.rsplit("/", 1)[1]
    await pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def truncate_tables(url: str) -> None:
    """Empty every table of a database but alembic_version (the schema stays migrated), then
    put back the rows the migrations seed, so the database is as a fresh one."""
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
        if "change_log" in tables:
            await conn.execute("INSERT INTO change_log (id, trimmed_through) VALUES (1, 1)")  # as migration 0006
    finally:
        await conn.close()
