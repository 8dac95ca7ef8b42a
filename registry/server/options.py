"""What the protocol needs beyond uvicorn's own settings, carried on uvicorn's Config
(a subclass, so that it survives the pickling that starts each worker process)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import uvicorn

from registry.config import TLSConfig


@dataclass(frozen=True)
class HttpLimits:
    max_header_bytes: int = 64 * 1024  # request line and headers together
    max_headers: int = 100
    header_timeout: float = 10.0  # from connect (or a request's first byte) to the end of its headers
    body_idle_timeout: float = 60.0  # a request body may receive nothing this long (while read)
    max_connections: int = 1000  # open connections per process; more are answered 503 (0: no limit)
    zero_copy: bool = True  # offer sendfile(2) file bodies on plain-HTTP connections


@dataclass(frozen=True)
class Drain:
    """What a server does on SIGTERM or SIGINT (run.py's RegistryServer)."""

    shutdown_delay: float = 5.0  # not ready, but still accepting, so that load balancers notice
    drain_timeout: float = 25.0  # then open requests may take this long; their connections are cut after it
    # After the cut, requests get this long to notice before uvicorn cancels them.
    cut_grace: float = 1.0


class ServerConfig(uvicorn.Config):
    def __init__(
        self, app: Any, limits: HttpLimits, tls: TLSConfig | None = None, drain: Drain | None = None, **kwargs: Any
    ):
        if tls is not None and tls.certificate:
            kwargs["ssl_context_factory"] = _tls_context
        self.drain = drain or Drain()
        # uvicorn's own bound on waiting for requests at shutdown: the backstop behind the cut.
        kwargs.setdefault("timeout_graceful_shutdown", self.drain.drain_timeout + self.drain.cut_grace)
        super().__init__(app, **kwargs)
        self.limits = limits
        self.tls = tls


def _tls_context(config: Any, _default_factory: Any) -> Any:
    # Called by uvicorn in each worker process as it loads the config.
    from registry.server.tls import ReloadingContext

    return ReloadingContext.create(config.tls).context
