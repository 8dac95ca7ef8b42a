"""Run the registry under uvicorn with Okura's protocol: one process, or a supervisor
forking `workers` processes that share the listening socket."""

from __future__ import annotations

import asyncio
import atexit
import glob
import json
import logging
import os
import shutil
import signal
import socket
import sys
import tempfile
import time
from types import FrameType
from typing import Any

import uvicorn
from uvicorn.supervisors import Multiprocess, multiprocess

from registry.config import Config
from registry.server.options import Drain, HttpLimits, ServerConfig
from registry.server.protocol import RegistryHttpProtocol

log = logging.getLogger("okura.server")

APP_FACTORY = "registry.app:create_app_from_env"  # each worker builds the app from the config it is handed


def limits_from(config: Config) -> HttpLimits:
    return HttpLimits(
        max_header_bytes=config.http.max_header_bytes,
        max_headers=config.http.max_headers,
        header_timeout=config.http.header_timeout,
        body_idle_timeout=config.http.body_idle_timeout,
        max_connections=config.http.max_connections,
    )


def server_config(config: Config, app: Any) -> ServerConfig:
    host, port = config.listen
    return ServerConfig(
        app,
        limits_from(config),
        config.http.tls,
        Drain(shutdown_delay=config.http.shutdown_delay, drain_timeout=config.http.drain_timeout),
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


class RegistryServer(uvicorn.Server):
    """uvicorn's server, draining on SIGTERM or SIGINT instead of stopping to accept at once:

    1. at once: not ready (registry/app.py marks the replica draining from the signal, which
       /readyz and the heartbeat report), but still accepting new connections for
       shutdown_delay, so that load balancers notice and stop sending requests here;
    2. then uvicorn's shutdown: stop accepting, close idle connections, and wait for the
       open requests (uploads, downloads; log follows end by themselves on draining);
    3. connections still open drain_timeout later are cut, and their requests cancelled if
       they do not notice within cut_grace (uvicorn's timeout_graceful_shutdown).

    A second SIGTERM, or a SIGINT after any signal, stops at once. The exit status is 0: uvicorn
    would raise the signal again once done, and die of it."""

    config: ServerConfig

    def __init__(self, config: ServerConfig) -> None:
        super().__init__(config)
        self.drain = config.drain
        self._signals: list[int] = []
        self._drain_began: float | None = None  # monotonic time of the first signal
        self._drain_announced = False
        self._cut = 0

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        # A signal handler: set flags only, the event loop acts on them (on_tick).
        if not self._signals:
            self._drain_began = time.monotonic()
            # Not serving yet, or no delay asked: nothing to keep accepting for.
            self.should_exit = not self.started or self.drain.shutdown_delay <= 0
        elif sig in self._signals or sig == signal.SIGINT:
            # A SIGTERM after a SIGINT is not a second request: Ctrl-C on a supervisor signals
            # its workers directly and the supervisor then sends them SIGTERM too.
            self.should_exit = self.force_exit = True
        self._signals.append(sig)

    async def on_tick(self, counter: int) -> bool:
        if self._drain_began is not None:
            if not self._drain_announced:
                self._announce_drain()
            if time.monotonic() - self._drain_began >= self.drain.shutdown_delay:
                self.should_exit = True
        return await super().on_tick(counter)

    def _announce_drain(self) -> None:
        self._drain_announced = True
        sig = signal.Signals(self._signals[0]).name
        log.info(
            "%s: draining, not ready; accepting for %gs more, then open requests get %gs",
            sig,
            self.drain.shutdown_delay,
            self.drain.drain_timeout,
            extra={"connections": len(self.server_state.connections)},
        )

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        stopped = time.monotonic()
        began = self._drain_began if self._drain_began is not None else stopped
        open_then = len(self.server_state.connections)
        cut = asyncio.get_running_loop().call_later(self.drain.drain_timeout, self._cut_connections)
        try:
            await super().shutdown(sockets)
        finally:
            cut.cancel()
        if self.force_exit:  # a second signal: uvicorn stopped waiting, drop what is open now
            self._cut_connections()
        done = time.monotonic()
        log.log(
            logging.WARNING if self._cut or self.force_exit else logging.INFO,  # requests were lost
            "drained in %.1fs: %d connection(s) open when accepting stopped, %d cut",
            done - stopped,
            open_then,
            self._cut,
            extra={"since_signal": round(done - began, 3), "forced": self.force_exit},
        )

    def _cut_connections(self) -> None:
        """drain_timeout is over (or a second signal came): drop what is still open. A request
        reading its body or writing its answer sees the client gone and ends."""
        connections = list(self.server_state.connections)
        self._cut += len(connections)
        for connection in connections:
            connection.transport.abort()


class RegistryProcess(multiprocess.Process):
    """A worker process running a RegistryServer (uvicorn's runs a plain uvicorn.Server)."""

    @property
    def server(self) -> uvicorn.Server:
        if self._server is None:
            self._server = RegistryServer(self.config)  # type: ignore[arg-type]
        return self._server


class RegistryMultiprocess(Multiprocess):
    """uvicorn's supervisor with RegistryProcess workers. On SIGTERM or SIGINT it sends each
    worker SIGTERM, as uvicorn's does, and waits while they drain; a further signal is passed
    on to them, which stops them at once."""

    def __init__(self, config: ServerConfig, sockets: list[socket.socket]) -> None:
        # uvicorn's supervisor makes its workers (at start, when one dies, on SIGHUP and
        # SIGTTIN) from its module's Process, with no way to be handed another class.
        multiprocess.Process = RegistryProcess  # type: ignore[misc]
        super().__init__(config, sockets)

    def join_all(self) -> None:
        # The workers hold their own copies of the listening socket. Closing ours makes new
        # connections refused once they have all stopped accepting, rather than left queued
        # until this process exits.
        for sock in self.sockets:
            sock.close()
        while any(p.process.is_alive() for p in self.processes):
            self._forward_signals()
            time.sleep(0.1)
        super().join_all()

    def _forward_signals(self) -> None:
        while self.signal_queue:
            sig = self.signal_queue.pop(0)
            for process in self.processes:
                if process.pid is not None and process.process.is_alive():
                    os.kill(process.pid, sig)


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
        RegistryMultiprocess(options, sockets=[options.bind_socket()]).run()
        return
    from registry.app import create_app

    server = RegistryServer(server_config(config, create_app(config)))
    server.run()
    if not server.started:
        sys.exit(3)  # uvicorn's STARTUP_FAILURE: the port was taken or the app failed to start
