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
    zero_copy: bool = True  # offer sendfile(2) file bodies on plain-HTTP connections


class ServerConfig(uvicorn.Config):
    def __init__(self, app: Any, limits: HttpLimits, tls: TLSConfig | None = None, **kwargs: Any):
        if tls is not None and tls.certificate:
            kwargs["ssl_context_factory"] = _tls_context
        super().__init__(app, **kwargs)
        self.limits = limits
        self.tls = tls


def _tls_context(config: Any, _default_factory: Any) -> Any:
    # Called by uvicorn in each worker process as it loads the config.
    from registry.server.tls import ReloadingContext

    return ReloadingContext.create(config.tls).context
