"""Database access through SQLAlchemy Core.

Model code writes each transaction as one plain function of a SQLAlchemy
Connection; `Database.read` and `Database.write` run it and return its result:

- PostgreSQL: on SQLAlchemy's asyncio engine (asyncpg), via `run_sync`.
- SQLite: on a sync engine in worker threads, the whole transaction in one
  thread hop. Measured here, SQLite through the async adapter cost ~0.5 ms per
  statement (two thread hops each) against ~0.05 ms in a thread, and writes to
  SQLite are serialised anyway: one writer thread whose transactions start with
  BEGIN IMMEDIATE (so SQLite never has to upgrade a read lock, which can fail
  instead of waiting), and a pool of reader threads (WAL lets them run beside it).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any, TypeVar, cast

from sqlalchemy import Connection, create_engine, event, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import DBAPIError, OperationalError, SQLAlchemyError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.sql import Insert

from registry import clock
from registry.errors import Unavailable
from registry.metadata.changes import CHANNEL

T = TypeVar("T")

# PostgreSQL advisory lock that orders online garbage collection against writers: every
# transaction that makes something depend on a blob or manifest holds it shared, the
# collector's delete transactions hold it exclusively (SQLite's single writer gives the
# same order for free). Shared holders never wait for each other.
_GC_LOCK = 7_146_531_002
# Deadlocks and serialization failures: PostgreSQL aborted the transaction; rerun it.
_RETRYABLE_SQLSTATES = {"40P01", "40001"}
# SQLite's lock wait when statement_timeout is 0 (SQLite has no "wait forever" worth having:
# its one writer thread would stall every write behind a lock nobody releases).
_SQLITE_DEFAULT_BUSY = 30.0


def utcnow() -> datetime:
    return clock.now()


def as_utc(value: datetime) -> datetime:
    """SQLite hands back naive datetimes; everything stored is UTC."""
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def sqlite_path(url: str) -> str:
    """The file of a sqlite:/// URL."""
    return url[len("sqlite:///") :]


def describe_url(url: str) -> str:
    """The URL without credentials, for logs and messages."""
    if "@" in url:
        scheme, _, rest = url.partition("://")
        return f"{scheme}://***@{rest.rsplit('@', 1)[1]}"
    return url


# A transaction sets this in its connection's `info` when it appended to the change log
# (registry/model/changes.py); after the commit, `Database.after_changes` is called.
CHANGES_MARK = "okura.changes"


class Database:
    def __init__(
        self,
        url: str,
        pool_size: int = 10,
        echo: bool = False,
        *,
        connect_timeout: float = 10.0,
        statement_timeout: float = 30.0,
        pool_timeout: float = 10.0,
        call_timeout: float = 60.0,
    ):
        """Timeouts in seconds (database.* in the config): each one running out is Unavailable
        (503). statement_timeout 0: the server's default (PostgreSQL), a 30 s lock wait (SQLite).
        call_timeout (PostgreSQL; 0: none): Okura's own deadline on a whole call, for a server
        or network that stops answering, which no server-side timeout can catch."""
        self.url = url
        self.is_sqlite = url.startswith("sqlite")
        # SQLite is a local file: its lock wait bounds a call, and a thread cannot be abandoned.
        self.call_timeout = 0.0 if self.is_sqlite else call_timeout
        self._statements: dict[Any, Any] = {}
        # Called (from any thread) after each commit that appended to the change log: the
        # runtime wakes this host's watchers with it.
        self.after_changes: Callable[[], None] | None = None
        if self.is_sqlite:
            path = sqlite_path(url)
            os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
            # SQLite's analogue of a statement timeout: how long a statement waits for the lock.
            busy = statement_timeout or _SQLITE_DEFAULT_BUSY
            args = {"check_same_thread": False, "timeout": busy}
            common = {"echo": echo, "max_overflow": 0, "pool_timeout": pool_timeout, "connect_args": args}
            self._read_engine = create_engine(url, pool_size=pool_size, **common)
            self._write_engine = create_engine(url, pool_size=1, **common)
            _sqlite_setup(self._read_engine, "BEGIN", busy)
            _sqlite_setup(self._write_engine, "BEGIN IMMEDIATE", busy)
            self._readers = ThreadPoolExecutor(pool_size, thread_name_prefix="okura-db-read")
            self._writer = ThreadPoolExecutor(1, thread_name_prefix="okura-db-write")
            self.dialect = sqlite
        else:
            target = "postgresql+asyncpg://" + url.split("://", 1)[1]
            self._async_engine = create_async_engine(
                target,
                echo=echo,
                pool_size=pool_size,
                max_overflow=pool_size,
                pool_pre_ping=True,
                pool_timeout=pool_timeout,
                connect_args=pg_connect_args(connect_timeout, statement_timeout),
            )
            self.dialect = postgresql

    def _deadline(self, bounded: bool) -> asyncio.Timeout:
        """call_timeout on a call: when it runs out, the call is cancelled and its connection
        closed (SQLAlchemy invalidates a connection whose use was cancelled), not returned to
        the pool. Calls made unbounded are the ones without a statement timeout either."""
        return asyncio.timeout(self.call_timeout if bounded and self.call_timeout > 0 else None)

    async def read(self, fn: Callable[..., T], *args: Any, bounded: bool = True) -> T:
        """Run `fn(conn, *args)` in a read-only transaction; `bounded`: within call_timeout."""
        deadline = self._deadline(bounded)
        try:
            # The caller's context variables go along (run_in_executor would drop them).
            ctx = contextvars.copy_context()
            if self.is_sqlite:
                loop = asyncio.get_running_loop()
                return await loop.run_in_executor(self._readers, ctx.run, _in_transaction, self._read_engine, fn, args)
            async with deadline, self._async_engine.connect() as conn:
                return await conn.run_sync(lambda c: ctx.run(fn, c, *args))
        except Exception as e:
            if (failure := _translated(e, deadline)) is e:
                raise
            raise failure from e

    async def write(self, fn: Callable[..., T], *args: Any, rehearse: bool = False, bounded: bool = True) -> T:
        """Run `fn(conn, *args)` in a write transaction, committed when it returns. With
        `rehearse` (a dry run) it is rolled back instead: every check and conflict happens as
        in the real write, and `fn`'s result tells what the write would have made. `bounded`:
        within call_timeout (a call cut by it may have committed or not, as when a connection
        drops at commit)."""
        if rehearse:
            fn = functools.partial(_rehearsal, fn)
        deadline = self._deadline(bounded)
        try:
            # The caller's context variables (who is writing: registry/model/events.py) go along.
            ctx = contextvars.copy_context()
            if self.is_sqlite:
                loop = asyncio.get_running_loop()
                result, changed = await loop.run_in_executor(
                    self._writer, ctx.run, _in_write, self._write_engine, fn, args
                )
                if changed and self.after_changes is not None:
                    self.after_changes()
                return result
            async with deadline:
                for attempt in range(3):
                    try:
                        async with self._async_engine.begin() as conn:
                            result, changed = await conn.run_sync(lambda c: ctx.run(_marked, c, fn, args))
                        if changed and self.after_changes is not None:
                            self.after_changes()
                        return result
                    except DBAPIError as e:
                        if attempt == 2 or _sqlstate(e) not in _RETRYABLE_SQLSTATES:
                            raise
                        await asyncio.sleep(0.01 * (attempt + 1))
            raise AssertionError("unreachable")
        except Rehearsed as done:
            return cast(T, done.result)
        except Exception as e:
            if (failure := _translated(e, deadline)) is e:
                raise
            raise failure from e

    def gc_shared(self, conn: Connection) -> None:
        """Inside a write transaction that adds a reference to a blob or manifest."""
        if not self.is_sqlite:
            conn.execute(text(f"SELECT pg_advisory_xact_lock_shared({_GC_LOCK})"))

    def gc_exclusive(self, conn: Connection) -> None:
        """Inside a garbage collector transaction that re-checks and deletes."""
        if not self.is_sqlite:
            conn.execute(text(f"SELECT pg_advisory_xact_lock({_GC_LOCK})"))

    def notify(self, conn: Connection, key: str) -> None:
        """Inside a write transaction: once it commits, every replica's change feed bumps the
        generation of `key` (PostgreSQL delivers NOTIFY on commit, never for a rollback). SQLite
        serves one host, where the caller bumps the shared generation itself."""
        if not self.is_sqlite:
            conn.execute(text("SELECT pg_notify(:channel, :key)"), {"channel": CHANNEL, "key": key})

    def insert_ignore(self, table: Any, *index_elements: str) -> Insert:
        """INSERT ... ON CONFLICT DO NOTHING for the current dialect; execute it with a
        parameter dict. Built once: constructing statements costs more than running them."""
        key = ("ignore", table.name, index_elements)
        stmt = self._statements.get(key)
        if stmt is None:
            stmt = self.dialect.insert(table).on_conflict_do_nothing(index_elements=list(index_elements))
            self._statements[key] = stmt
        return stmt

    def upsert(self, table: Any, index_elements: tuple[str, ...], update: tuple[str, ...]) -> Insert:
        """INSERT ... ON CONFLICT DO UPDATE of the `update` columns; built once. No RETURNING:
        taking the manifest id from it made tests/e2e/test_prune_stress.py lose a blob under
        load (2 runs of 8; 0 of 12 reading the id after the upsert), cause not yet known."""
        key = ("upsert", table.name, index_elements, update)
        stmt = self._statements.get(key)
        if stmt is None:
            base = self.dialect.insert(table)
            stmt = base.on_conflict_do_update(
                index_elements=list(index_elements), set_={c: base.excluded[c] for c in update}
            )
            self._statements[key] = stmt
        return stmt

    async def ping(self) -> None:
        await self.read(lambda conn: conn.execute(text("SELECT 1")).scalar())

    def describe(self) -> str:
        return describe_url(self.url)

    async def schema_revision(self) -> str | None:
        from registry.metadata.migrate import current_revision

        return await self.read(current_revision)

    async def close(self) -> None:
        if self.is_sqlite:
            self._readers.shutdown(wait=True)
            self._writer.shutdown(wait=True)
            self._read_engine.dispose()
            self._write_engine.dispose()
        else:
            await self._async_engine.dispose()

    async def migrate(self) -> bool:
        from registry.metadata.migrate import run_upgrade

        # Migrations may rewrite big tables: no statement timeout for them.
        return await self.write(without_statement_timeout, run_upgrade, self.is_sqlite, bounded=False)


def pg_connect_args(connect_timeout: float, statement_timeout: float) -> dict[str, Any]:
    """asyncpg's connect() arguments: its connect timeout, and statement_timeout as a session
    setting sent at startup (PostgreSQL enforces it, in milliseconds). With 0 none is sent: the
    server's default applies, and poolers that refuse startup settings (PgBouncer) still work."""
    args: dict[str, Any] = {"timeout": connect_timeout}
    if statement_timeout > 0:
        args["server_settings"] = {"statement_timeout": str(round(statement_timeout * 1000))}
    return args


def without_statement_timeout(conn: Connection, fn: Callable[..., T], *args: Any) -> T:
    """Run `fn(conn, *args)` with no statement timeout for the rest of this transaction, for
    work that is legitimately long (migrations). SQLite has none to lift."""
    if conn.dialect.name == "postgresql":
        conn.execute(text("SET LOCAL statement_timeout = 0"))
    return fn(conn, *args)


class Rehearsed(Exception):
    """Raised out of a rehearsed write's transaction so that it rolls back; carries the result."""

    def __init__(self, result: Any):
        super().__init__("rehearsed")
        self.result = result


def _rehearsal(fn: Callable[..., Any], conn: Connection, *args: Any) -> Any:
    raise Rehearsed(fn(conn, *args))


def _in_transaction(engine: Any, fn: Callable[..., T], args: tuple[Any, ...]) -> T:
    with engine.begin() as conn:
        return fn(conn, *args)


def _marked(conn: Connection, fn: Callable[..., T], args: tuple[Any, ...]) -> tuple[T, bool]:
    try:
        result = fn(conn, *args)
    except BaseException:
        # The mark goes with the transaction; a connection invalidated by the failure (a
        # cancelled call) has no info to clean, and asking for it must not hide the failure.
        with contextlib.suppress(SQLAlchemyError):
            conn.info.pop(CHANGES_MARK, None)
        raise
    return result, conn.info.pop(CHANGES_MARK, False)


def _in_write(engine: Any, fn: Callable[..., T], args: tuple[Any, ...]) -> tuple[T, bool]:
    """A write transaction; also whether it appended to the change log (info survives the
    connection's return to the pool, so the mark is taken off before the commit)."""
    with engine.begin() as conn:
        return _marked(conn, fn, args)


def _sqlstate(e: DBAPIError) -> str | None:
    orig = e.orig
    return getattr(orig, "sqlstate", None) or getattr(getattr(orig, "__cause__", None), "sqlstate", None)


# SQLSTATE classes and codes meaning the server cannot serve us now, not that our SQL is wrong:
# connection exceptions, insufficient resources, operator intervention (shutdown, starting
# up), system errors, authorization, a missing database, connections not allowed.
_UNAVAILABLE_SQLSTATE_CLASSES = ("08", "53", "57", "58", "28", "3D")
_UNAVAILABLE_SQLSTATES = {"55000"}


def _server_unavailable(e: DBAPIError) -> bool:
    state = _sqlstate(e)
    if state is None:
        return e.connection_invalidated or isinstance(e.orig, OSError | TimeoutError)
    return state[:2] in _UNAVAILABLE_SQLSTATE_CLASSES or state in _UNAVAILABLE_SQLSTATES


def _translated(e: Exception, deadline: asyncio.Timeout) -> Exception:
    """What a failed call raises: Unavailable (503) when the database did not answer (its
    connection failed or timed out, or call_timeout ran out, whatever the cancellation then
    surfaced as inside SQLAlchemy), else the error itself."""
    if deadline.expired() or isinstance(e, (OperationalError, OSError, PoolTimeout)):  # TimeoutError is an OSError
        return _unavailable(e)
    if isinstance(e, DBAPIError) and _server_unavailable(e):
        return _unavailable(e)
    return e


def _unavailable(e: BaseException) -> Unavailable:
    # What failed (host, file, driver message) is logged from the cause, never sent to clients.
    return Unavailable("the metadata database is unavailable, try again later", headers={"Retry-After": "5"})


def _short(e: BaseException) -> str:
    if isinstance(e, DBAPIError) and e.orig is not None:
        return str(e.orig).splitlines()[0][:200]
    return str(e).splitlines()[0][:200] if str(e) else type(e).__name__


def _sqlite_setup(engine: Any, begin: str, busy: float) -> None:
    @event.listens_for(engine, "connect")
    def _connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # we issue BEGIN ourselves
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        # NORMAL in WAL mode never corrupts and loses nothing on a process crash;
        # only an OS crash may roll back the last transactions.
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute(f"PRAGMA busy_timeout={round(busy * 1000)}")
        cur.close()

    @event.listens_for(engine, "begin")
    def _begin(conn: Connection) -> None:
        conn.exec_driver_sql(begin)
