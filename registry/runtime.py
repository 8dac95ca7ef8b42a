"""The composition root: everything a process runs on, built from a Config in one place.

`open_runtime` opens the metadata database (creating and migrating it, or insisting that it
exists and is current), the instrumented blob storage, the caches and their change feed,
the auth services and the access controller, starts the background jobs it is asked for,
and closes everything in the reverse order. The ASGI app (registry/app.py), every `okura`
command and the test fixtures open it; nothing else assembles these parts.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import os
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from importlib import metadata

from auth.access import AccessController, AllowAll
from auth.controller import OpenShiftAccessController
from auth.jwt_tokens import TokenIssuer
from auth.policy import BindingAuthorizer
from auth.store import AuthStore
from registry.cache import BlobContentCache, Generation, MetadataCache
from registry.config import Config
from registry.errors import Unavailable
from registry.imports.sealing import SecretKeys
from registry.metadata.changes import ChangeFeed
from registry.metadata.db import Database, sqlite_path
from registry.metadata.migrate import SCHEMA_HEAD
from registry.metrics import InstrumentedStorage
from registry.model import events, instances, registry_config
from registry.model.changes import ChangeWaiter
from registry.model.context import Registry
from registry.model.repositories import repository_id
from registry.notifications import delivery, retention
from registry.pruning import schedule as prune_schedule
from registry.tasks import change_trim, config_sync, heartbeat, import_controller, upload_purge
from storage import create_storage

log = logging.getLogger("okura")


def version() -> str:
    try:
        return metadata.version("okura")
    except metadata.PackageNotFoundError:
        return "unknown"


class RuntimeUnavailable(Exception):
    """The runtime cannot open: a missing or outdated database, an unreachable one. The
    message is one line a user can act on."""


class Schema(enum.Enum):
    MIGRATE = "migrate"  # create the database if needed and bring its schema up to date
    EXISTING = "existing"  # read-only use: the database must exist with the current schema


@dataclass
class AuthServices:
    """Users, tokens and role bindings (the store), permission checks (the authorizer) and
    bearer JWTs (the issuer): available whether or not the server enforces auth, since
    `okura auth` prepares accounts before auth is turned on."""

    store: AuthStore
    authorizer: BindingAuthorizer
    issuer: TokenIssuer


@dataclass
class Runtime:
    config: Config
    registry: Registry  # what the model functions need
    auth: AuthServices
    access: AccessController  # AllowAll, or OpenShift's checks when auth.enabled
    migrated: bool = False  # the schema was created or upgraded on opening
    jobs: tuple[str, ...] = ()  # the background jobs running in this process
    _tasks: list[asyncio.Task[None]] = field(default_factory=list, repr=False)


def generation_path(config: Config) -> str:
    """Where the cache counters live. Processes sharing a SQLite database share the counters
    beside it, whatever their data directories; on PostgreSQL the change feed carries
    changes between processes, and the counters serve the workers of one data directory."""
    if config.database_url.startswith("sqlite:"):
        return sqlite_path(config.database_url) + "-generation"
    return os.path.join(config.data_dir, "run", "cache-generation")


def background_jobs(reg: Registry) -> dict[str, Callable[[], Awaitable[None]]]:
    jobs: dict[str, Callable[[], Awaitable[None]]] = {
        "config-sync": lambda: config_sync.run_forever(reg),
        "upload-reclaim": lambda: upload_purge.reclaim_forever(reg),
        "image-pruner": lambda: prune_schedule.run_forever(reg),
        "change-log-trim": lambda: change_trim.run_forever(reg),
    }
    if reg.instance is not None:
        jobs["instance-heartbeat"] = lambda: heartbeat.run_forever(reg)
    if reg.config.uploads.purge_enabled:
        jobs["upload-purge"] = lambda: upload_purge.run_forever(reg)
    if reg.config.imports.controller:
        jobs["image-import"] = lambda: import_controller.run_forever(reg)
    jobs["notifications"] = lambda: delivery.run_forever(reg)
    jobs["event-log-trim"] = lambda: retention.run_forever(reg)
    return jobs


async def _database(config: Config, schema: Schema, wait: float) -> tuple[Database, bool]:
    url = config.database_url
    if schema is Schema.EXISTING and url.startswith("sqlite:") and not os.path.exists(sqlite_path(url)):
        raise RuntimeUnavailable(
            f"no database at {sqlite_path(url)}: start the server or run `okura migrate` with the same "
            "config, --data-dir or OKURA_DATABASE_URL first"
        )
    d = config.database
    db = Database(
        url,
        pool_size=d.pool_size,
        echo=d.echo,
        connect_timeout=d.connect_timeout,
        statement_timeout=d.statement_timeout,
        pool_timeout=d.pool_timeout,
        call_timeout=d.call_timeout,
    )
    migrated = False
    try:
        await _reach(db, wait)
        if schema is Schema.MIGRATE:
            migrated = await db.migrate()
        else:
            revision = await db.schema_revision()
            if revision != SCHEMA_HEAD:
                found = f"schema {revision}" if revision else "no schema"
                raise RuntimeUnavailable(
                    f"the database {db.describe()} has {found}, this okura needs {SCHEMA_HEAD}: run `okura migrate`"
                )
    except BaseException:
        await db.close()
        raise
    return db, migrated


async def _reach(db: Database, wait: float) -> None:
    """Ping the database; for up to `wait` seconds, retry with a logged line per attempt
    (a server may start before its database does)."""
    deadline = time.monotonic() + wait
    attempt = 0
    while True:
        attempt += 1
        try:
            await db.ping()
            return
        except Unavailable as e:
            cause = str(e.__cause__).splitlines()[0][:200] if e.__cause__ else e.message
            if time.monotonic() >= deadline:
                raise RuntimeUnavailable(f"cannot reach the database {db.describe()}: {cause}") from None
            delay = min(2.0 ** min(attempt, 4) / 4, max(deadline - time.monotonic(), 0.1))
            log.warning(
                "waiting for the database",
                extra={"database": db.describe(), "attempt": attempt, "error": cause, "retry_in_s": round(delay, 1)},
            )
            await asyncio.sleep(delay)


def _access(config: Config, reg: Registry, auth: AuthServices) -> AccessController:
    if not config.auth.enabled:
        return AllowAll()

    async def repository_exists(name: str) -> bool:
        return await repository_id(reg, name) is not None

    return OpenShiftAccessController(
        config.auth,
        auth.store,
        auth.authorizer,
        auth.issuer,
        reg.cache.generation,
        repository_exists,
        base_url=config.http.base_url,
    )


@contextlib.asynccontextmanager
async def open_runtime(
    config: Config,
    *,
    schema: Schema = Schema.MIGRATE,
    storage: bool = True,
    serving: bool = False,
    jobs: bool = False,
    wait_for_database: float = 0.0,
) -> AsyncIterator[Runtime]:
    """Open everything; close it in reverse order on exit.

    schema: MIGRATE creates and migrates the database; EXISTING refuses a missing or
        outdated one (read-only commands never create a database).
    storage: open the blob storage (commands that read only metadata skip it).
    serving: prepare to serve requests (signing keys loaded, a large I/O thread pool).
    jobs: run the background jobs (upload purge and reclaim, scheduled pruning).
    wait_for_database: seconds to keep retrying an unreachable database at start.
    """
    async with contextlib.AsyncExitStack() as stack:
        if serving:
            # Blob reads and writes run in threads; the default pool (cpu+4) is too small
            # for dozens of concurrent transfers.
            executor = ThreadPoolExecutor(max_workers=64, thread_name_prefix="okura-io")
            asyncio.get_running_loop().set_default_executor(executor)
        db, migrated = await _database(config, schema, wait_for_database)
        stack.push_async_callback(db.close)

        blob_storage = InstrumentedStorage(
            create_storage(config.storage.driver, {"root": config.storage_root, "s3": config.storage.s3})
        )
        if storage:
            await blob_storage.open()
        stack.push_async_callback(blob_storage.close)

        generation = Generation(generation_path(config))
        stack.callback(generation.close)
        cache = MetadataCache(generation, config.cache.max_bytes)
        content = None
        if config.storage.driver != "filesystem" and config.cache.blob_bytes > 0:
            content = BlobContentCache(config.cache.blob_bytes, config.cache.blob_max_size)
        if not db.is_sqlite:
            # Changes made here retire other processes' caches, and theirs ours.
            cache.feed = ChangeFeed(config.database_url, generation)
            await cache.feed.start()
            stack.push_async_callback(cache.feed.stop)
        reg = Registry(config=config, db=db, storage=blob_storage, cache=cache, content=content)
        reg.waiter = ChangeWaiter(generation)
        reg.secret_keys = SecretKeys(config.secrets_key_file)
        host = socket.gethostname()
        events.set_source(instances.reachable_address(config.http.addr, host, host + "."))  # never "localhost"
        db.after_changes = reg.waiter.committed
        if cache.feed is not None:
            cache.feed.on_notify = reg.waiter.notified
        stack.push_async_callback(reg.waiter.close)
        # A server (one running the jobs) stores the Config resource on first start and takes
        # its log level from it; other processes read it, or the config file's initial spec.
        reg.settings = registry_config.LiveSettings(config, manage_logging=jobs)
        await registry_config.load(reg, create=jobs)
        if jobs:
            reg.instance = instances.this_instance(config, version())

        store = AuthStore(db)
        auth = AuthServices(store, BindingAuthorizer(store, generation), TokenIssuer(db, config.auth, generation))
        runtime = Runtime(config, reg, auth, _access(config, reg, auth), migrated=migrated)
        if serving and config.auth.enabled:
            await auth.issuer.load()
        if jobs:
            started = background_jobs(reg)
            runtime.jobs = tuple(started)
            runtime._tasks = [asyncio.create_task(run(), name=name) for name, run in started.items()]
            stack.push_async_callback(_stop, runtime._tasks)
        yield runtime


JOB_STOP_TIMEOUT = 10.0  # a job still running this long after its cancellation is left behind


async def _stop(tasks: list[asyncio.Task[None]]) -> None:
    """Cancel the background jobs and wait for them, within JOB_STOP_TIMEOUT: a job that does not
    end must not keep the server from exiting (the drain's deadline is the operator's promise)."""
    for task in tasks:
        task.cancel()
    if not tasks:
        return
    done, running = await asyncio.wait(tasks, timeout=JOB_STOP_TIMEOUT)
    for task in done:  # retrieved, as gather would: the jobs log their own failures
        if not task.cancelled():
            task.exception()
    if running:
        names = ", ".join(sorted(task.get_name() for task in running))
        log.error("background jobs did not stop within %gs of cancellation: %s", JOB_STOP_TIMEOUT, names)
