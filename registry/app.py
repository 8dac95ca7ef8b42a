"""The ASGI application."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from starlette.applications import Starlette

from auth.access import AccessController, AllowAll
from registry.api import admin, base, blobs, imagepruner, imagestreams, listings, manifests, ops, token, uploads
from registry.api.errors import EXCEPTION_HANDLERS
from registry.api.middleware import Observability
from registry.api.routing import build_routes
from registry.cache import BlobContentCache, Generation, MetadataCache
from registry.config import Config, config_from_dict, load_config
from registry.metadata.db import Database
from registry.metrics import InstrumentedStorage
from registry.model.context import Registry
from registry.model.repositories import repository_id
from registry.pruning import schedule as prune_schedule
from registry.tasks import upload_purge
from storage import create_storage

log = logging.getLogger("okura")

# Order matters: specific paths before the catch-all blob route.
AUTH_ROUTE_SPECS = [*token.ROUTES, *admin.ROUTES]
ROUTE_SPECS = [
    *base.ROUTES,
    *listings.ROUTES,
    *manifests.ROUTES,
    *uploads.ROUTES,
    *blobs.ROUTES,
    *ops.ROUTES,
    *imagestreams.ROUTES,
    *imagepruner.ROUTES,
]


def build_registry(config: Config) -> Registry:
    options = {"root": config.storage_root, "s3": config.storage.s3}
    storage = InstrumentedStorage(create_storage(config.storage.driver, options))
    db = Database(config.database_url, pool_size=config.database.pool_size, echo=config.database.echo)
    generation = Generation(os.path.join(config.data_dir, "run", "cache-generation"))
    content = None
    if config.storage.driver != "filesystem" and config.cache.blob_bytes > 0:
        content = BlobContentCache(config.cache.blob_bytes, config.cache.blob_max_size)
    cache = MetadataCache(generation, config.cache.max_bytes)
    return Registry(config=config, db=db, storage=storage, cache=cache, content=content)


def build_access(config: Config, reg: Registry) -> Any:
    """The access controller: open, or OpenShift-style when auth is enabled."""
    if not config.auth.enabled:
        return AllowAll()
    from auth.controller import OpenShiftAccessController
    from auth.jwt_tokens import TokenIssuer
    from auth.policy import BindingAuthorizer
    from auth.store import AuthStore

    store = AuthStore(reg.db)

    async def repository_exists(name: str) -> bool:
        return await repository_id(reg, name) is not None

    return OpenShiftAccessController(
        config.auth,
        store,
        BindingAuthorizer(store, reg.cache.generation),
        TokenIssuer(reg.db, config.auth, reg.cache.generation),
        reg.cache.generation,
        repository_exists,
        base_url=config.http.base_url,
    )


def create_app(config: Config, access: AccessController | None = None, background: bool = True) -> Any:
    reg = build_registry(config)
    access = access or build_access(config, reg)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        # Blob reads and writes run in threads; the default pool (cpu+4) is too small
        # for dozens of concurrent transfers.
        asyncio.get_running_loop().set_default_executor(
            ThreadPoolExecutor(max_workers=64, thread_name_prefix="okura-io")
        )
        await reg.storage.open()
        await reg.db.migrate()
        if not reg.db.is_sqlite:
            from registry.metadata.changes import ChangeFeed

            reg.cache.feed = ChangeFeed(config.database_url, reg.cache.generation)
            await reg.cache.feed.start()
        issuer = getattr(access, "issuer", None)
        if issuer is not None:
            await issuer.load()
        tasks = []
        if background and config.uploads.purge_enabled:
            tasks.append(asyncio.create_task(upload_purge.run_forever(reg)))
        if background:
            tasks.append(asyncio.create_task(upload_purge.reclaim_forever(reg)))
        if background:
            tasks.append(asyncio.create_task(prune_schedule.run_forever(reg)))
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            if reg.cache.feed is not None:
                await reg.cache.feed.stop()
            await reg.db.close()
            await reg.storage.close()

    specs = ROUTE_SPECS + (AUTH_ROUTE_SPECS if config.auth.enabled else [])
    app = Starlette(routes=build_routes(specs), exception_handlers=EXCEPTION_HANDLERS, lifespan=lifespan)
    app.state.registry = reg
    app.state.access = access
    app.state.config = config
    return Observability(app, log_access=config.log.access_log)


def create_app_from_env() -> Any:
    """Entry point of each uvicorn worker: the parent passes the effective config."""
    from registry.logs import setup_logging

    raw = os.environ.get("OKURA_CONFIG_JSON")
    config = config_from_dict(json.loads(raw)) if raw else load_config(os.environ.get("OKURA_CONFIG"))
    setup_logging(config.log.level, config.log.format)
    return create_app(config)
