"""Run the registry under uvicorn with Okura's protocol: one process, or a supervisor
forking `workers` processes that share the listening socket."""

from __future__ import annotations

import sys
from typing import Any

import uvicorn
from uvicorn.supervisors import Multiprocess

from registry.config import Config
from registry.server.options import HttpLimits, ServerConfig
from registry.server.protocol import RegistryHttpProtocol

APP_FACTORY = "registry.app:create_app_from_env"  # each worker builds the app from the config it is handed


def limits_from(config: Config) -> HttpLimits:
    return HttpLimits(
        max_header_bytes=config.http.max_header_bytes,
        max_headers=config.http.max_headers,
        header_timeout=config.http.header_timeout,
    )


def server_config(config: Config, app: Any) -> ServerConfig:
    host, port = config.listen
    return ServerConfig(
        app,
        limits_from(config),
        host=host,
        port=port,
        loop="uvloop",
        http=RegistryHttpProtocol,
        log_config=None,
        access_log=False,
        server_header=False,
        timeout_keep_alive=config.http.keepalive_timeout,  # type: ignore[arg-type]
        lifespan="on",
        factory=isinstance(app, str),
        workers=config.http.workers,
    )


def serve(config: Config) -> None:
    if config.http.workers > 1:
        options = server_config(config, APP_FACTORY)
        Multiprocess(options, sockets=[options.bind_socket()]).run()
        return
    from registry.app import create_app

    server = uvicorn.Server(server_config(config, create_app(config)))
    server.run()
    if not server.started:
        sys.exit(3)  # uvicorn's STARTUP_FAILURE: the port was taken or the app failed to start
