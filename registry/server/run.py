"""Run the registry under uvicorn with Okura's protocol: one process, or a supervisor
forking `workers` processes that share the listening socket."""

from __future__ import annotations

import atexit
import glob
import json
import os
import shutil
import sys
import tempfile
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
        config.http.tls,
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


def worker_metrics_dir() -> str:
    """A directory for prometheus-client's multiprocess files, in memory (/dev/shm) and off
    the data disk: the files are memory-mapped and grow sparsely, and touching a new page
    on a full disk kills the worker with SIGBUS. One per supervisor, removed when it exits."""
    base = metrics_dir_base()
    for stale in glob.glob(os.path.join(base, "okura-metrics-*")):  # left by a supervisor that was killed
        pid = stale.rsplit("-", 1)[1]
        if pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(stale, ignore_errors=True)
    path = os.path.join(base, f"okura-metrics-{os.getpid()}")
    shutil.rmtree(path, ignore_errors=True)
    os.makedirs(path)
    atexit.register(shutil.rmtree, path, True)
    return path


def metrics_dir_base() -> str:
    return "/dev/shm" if os.access("/dev/shm", os.W_OK) else tempfile.gettempdir()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def serve(config: Config) -> None:
    if config.http.workers > 1:
        # Each worker builds the app from the effective config and reports its metrics
        # into the shared directory, which the metrics endpoint of any worker aggregates.
        os.environ["OKURA_CONFIG_JSON"] = json.dumps(config.to_dict())
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = worker_metrics_dir()
        options = server_config(config, APP_FACTORY)
        Multiprocess(options, sockets=[options.bind_socket()]).run()
        return
    from registry.app import create_app

    server = uvicorn.Server(server_config(config, create_app(config)))
    server.run()
    if not server.started:
        sys.exit(3)  # uvicorn's STARTUP_FAILURE: the port was taken or the app failed to start
