"""Async database access through SQLAlchemy Core: SQLite (WAL) embedded, PostgreSQL shared."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import event, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.sql import Insert

from registry.errors import Unavailable


def utcnow() -> datetime:
    return datetime.now(UTC)


def as_utc(value: datetime) -> datetime:
    """SQLite hands back naive datetimes; everything stored is UTC."""
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def async_url(url: str) -> str:
    if url.startswith("sqlite:///"):
        return "sqlite+aiosqlite:///" + url[len("sqlite:///") :]
    if url.startswith("postgresql://"):
        return "postgresql+asyncpg://" + url[len("postgresql://") :]
    return url


def describe_url(url: str) -> str:
    """The URL without credentials, for logs."""
    if "@" in url:
        scheme, _, rest = url.partition("://")
        return f"{scheme}://***@{rest.rsplit('@', 1)[1]}"
    return url


class Database:
    def __init__(self, url: str, pool_size: int = 10, echo: bool = False):
        self.url = url
        self.is_sqlite = url.startswith("sqlite")
        target = async_url(url)
        if self.is_sqlite:
            path = url[len("sqlite:///") :]
            if path and path != ":memory:":
                os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
            # Readers share a pool; writers go through one connection that opens every
            # transaction with BEGIN IMMEDIATE, so SQLite never has to upgrade a read
            # lock (which could fail with "database is locked" instead of waiting).
            self._read = create_async_engine(target, echo=echo, pool_size=pool_size, max_overflow=0)
            self._write = create_async_engine(target, echo=echo, pool_size=1, max_overflow=0)
            _sqlite_setup(self._read, "BEGIN")
            _sqlite_setup(self._write, "BEGIN IMMEDIATE")
            self.dialect = sqlite.dialect()
        else:
            self._read = create_async_engine(
                target, echo=echo, pool_size=pool_size, max_overflow=pool_size, pool_pre_ping=True
            )
            self._write = self._read
            self.dialect = postgresql.dialect()

    @property
    def engine(self) -> AsyncEngine:
        return self._write

    @asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncConnection]:
        try:
            async with self._read.connect() as conn:
                yield conn
        except (OperationalError, OSError) as e:
            raise Unavailable(f"metadata database unavailable: {_short(e)}") from e

    @asynccontextmanager
    async def write(self) -> AsyncIterator[AsyncConnection]:
        try:
            async with self._write.begin() as conn:
                yield conn
        except (OperationalError, OSError) as e:
            raise Unavailable(f"metadata database unavailable: {_short(e)}") from e

    def insert_ignore(self, table: Any, index_elements: list[str]) -> Insert:
        """INSERT ... ON CONFLICT DO NOTHING for the current dialect."""
        if self.is_sqlite:
            return sqlite.insert(table).on_conflict_do_nothing(index_elements=index_elements)
        return postgresql.insert(table).on_conflict_do_nothing(index_elements=index_elements)

    def upsert(self, table: Any, index_elements: list[str], update: list[str]) -> Any:
        mod = sqlite if self.is_sqlite else postgresql
        stmt = mod.insert(table)
        return stmt.on_conflict_do_update(index_elements=index_elements, set_={c: stmt.excluded[c] for c in update})

    async def ping(self) -> None:
        async with self.read() as conn:
            await conn.execute(text("SELECT 1"))

    async def close(self) -> None:
        await self._read.dispose()
        if self._write is not self._read:
            await self._write.dispose()

    async def migrate(self) -> None:
        from registry.metadata.migrate import upgrade

        await upgrade(self)


def _short(e: BaseException) -> str:
    if isinstance(e, DBAPIError) and e.orig is not None:
        return str(e.orig).splitlines()[0][:200]
    return str(e).splitlines()[0][:200] if str(e) else type(e).__name__


def _sqlite_setup(engine: AsyncEngine, begin: str) -> None:
    @event.listens_for(engine.sync_engine, "connect")
    def _connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # we issue BEGIN ourselves
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        # NORMAL in WAL mode never corrupts and loses nothing on a process crash;
        # only an OS crash may roll back the last transactions.
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA busy_timeout=30000")
        cur.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _begin(conn: Any) -> None:
        conn.exec_driver_sql(begin)


async def wait_for_database(db: Database, timeout: float = 30.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        try:
            await db.ping()
            return
        except Unavailable:
            if asyncio.get_running_loop().time() > deadline:
                raise
            await asyncio.sleep(0.5)
