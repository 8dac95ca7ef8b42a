"""What the protocol needs beyond uvicorn's own settings, carried on uvicorn's Config
(a subclass, so that it survives the pickling that starts each worker process)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import uvicorn


@dataclass(frozen=True)
class HttpLimits:
    max_header_bytes: int = 64 * 1024  # request line and headers together
    max_headers: int = 100
    header_timeout: float = 10.0  # from connect (or a request's first byte) to the end of its headers
    zero_copy: bool = True  # offer sendfile(2) file bodies on plain-HTTP connections


class ServerConfig(uvicorn.Config):
    def __init__(self, app: Any, limits: HttpLimits, **kwargs: Any):
        super().__init__(app, **kwargs)
        self.limits = limits
