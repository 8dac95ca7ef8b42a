"""The ASGI application: the routes over a Runtime (registry/runtime.py)."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
from collections.abc import AsyncIterator
from typing import Any

from starlette.applications import Starlette

from registry.api import (
    admin,
    authorization,
    base,
    blobs,
    discovery,
    imagepruner,
    imagestreamimports,
    imagestreams,
    imagestreamtags,
    listings,
    manifests,
    namespaces,
    notificationendpoints,
    ops,
    pod_logs,
    pods,
    registryconfig,
    secrets,
    token,
    uploads,
)
from registry.api.errors import EXCEPTION_HANDLERS
from registry.api.limits import RequestLimits
from registry.api.middleware import Observability
from registry.api.routing import build_routes
from registry.config import Config, config_from_dict, load_config
from registry.logs import size_log_ring
from registry.runtime import Runtime, open_runtime

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
    *discovery.ROUTES,
    *namespaces.ROUTES,
    *secrets.ROUTES,
    *pods.ROUTES,
    *pod_logs.ROUTES,
    *imagestreamimports.ROUTES,
    *imagestreams.ROUTES,
    *imagestreamtags.ROUTES,
    *imagepruner.ROUTES,
    *registryconfig.ROUTES,
    *notificationendpoints.ROUTES,
    *authorization.ROUTES,
]


def _starlette(config: Config, lifespan: Any = None) -> Starlette:
    specs = ROUTE_SPECS + (AUTH_ROUTE_SPECS if config.auth.enabled else [])
    return Starlette(routes=build_routes(specs), exception_handlers=EXCEPTION_HANDLERS, lifespan=lifespan)


def build_app(runtime: Runtime) -> Any:
    """The app over a runtime that is already open (the tests open their own)."""
    app = _starlette(runtime.config)
    app.state.runtime = runtime
    # Limits inside Observability, so that the 429s are logged and counted like any answer.
    return Observability(RequestLimits(app), log_access=runtime.config.log.access_log, audit=runtime.config.log.audit)


def create_app(config: Config, background: bool = True) -> Any:
    """The app a server runs: its lifespan opens the runtime, with the background jobs."""
    size_log_ring(config.log.ring_lines)  # the lines `kubectl logs` and `okura logs` can read

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with open_runtime(
            config, serving=True, jobs=background, wait_for_database=config.database.wait_at_start
        ) as runtime:
            app.state.runtime = runtime
            if runtime.jobs:
                log.debug("background jobs", extra={"jobs": ",".join(runtime.jobs)})
            _drain_on_signal(runtime)
            yield

    limited = RequestLimits(_starlette(config, lifespan))
    return Observability(limited, log_access=config.log.access_log, audit=config.log.audit)


def _drain_on_signal(runtime: Runtime) -> None:
    """On SIGTERM or SIGINT mark this replica draining at once, so that /readyz answers 503,
    it reports itself not ready (Terminating) and log follows end, while the server keeps
    serving for http.shutdown_delay and then drains (registry/server/run.py). The server's own
    handlers run after ours and are put back when it exits."""
    settings = runtime.registry.settings

    for sig in (signal.SIGTERM, signal.SIGINT):
        previous = signal.getsignal(sig)
        if not callable(previous):
            continue

        def handler(signum: int, frame: Any, previous: Any = previous) -> None:
            settings.draining = True
            previous(signum, frame)

        with contextlib.suppress(ValueError):  # not the main thread (an embedded server): no signals
            signal.signal(sig, handler)


def create_app_from_env() -> Any:
    """Entry point of each uvicorn worker: the parent passes the effective config."""
    from registry.logs import setup_logging

    raw = os.environ.get("OKURA_CONFIG_JSON")
    config = config_from_dict(json.loads(raw)) if raw else load_config(os.environ.get("OKURA_CONFIG"))
    setup_logging(config.log.level, config.log.format)
    return create_app(config)
