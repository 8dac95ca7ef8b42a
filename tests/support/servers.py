"""`okura serve` as a subprocess that a test can kill, restart and look into (robustness and
replica tests), and replicas: two of them on one database and bucket."""

from __future__ import annotations

import contextlib
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from tests.support.logs import tail
from tests.support.ports import allocate_port
from tests.support.processes import okura_env, serve_argv, signal_group, spawn


class OkuraServer:
    """`okura serve` as a subprocess on a free port; restartable on the same data dir."""

    def __init__(
        self, data_dir: Path, workers: int = 1, env: dict[str, str] | None = None, log_path: Path | None = None
    ):
        self.data_dir = Path(data_dir)
        self.workers = workers
        self.env = env or {}
        self.proc: subprocess.Popen | None = None
        self.port = 0
        self.log_path = log_path or self.data_dir.parent / f"{self.data_dir.name}-server.log"
        self._log = None

    # -- lifecycle -------------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self, timeout: float = 30.0) -> OkuraServer:
        assert self.proc is None or self.proc.poll() is not None, "already running"
        self.port = allocate_port()
        env = okura_env(**{"OKURA_LOG_ACCESS_LOG": "false", "OKURA_LOG_LEVEL": "warning", **self.env})
        args = serve_argv(self.data_dir, self.port, *(["--workers", str(self.workers)] if self.workers > 1 else []))
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - kept open while the server runs
        self._log.write(f"\n=== start {' '.join(args)}\n".encode())
        self._log.flush()
        self.proc = spawn(args, self._log, env)
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"okura exited with {self.proc.returncode}:\n{self.log_tail()}")
            try:
                if httpx.get(f"{self.url}/v2/", timeout=1.0).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                self.kill()
                raise RuntimeError(f"okura did not answer GET /v2/ within {timeout}s:\n{self.log_tail()}")
            time.sleep(0.05)

    def kill(self) -> None:
        """SIGKILL the server and every worker it started (its own process group)."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            signal_group(self.proc, signal.SIGKILL)
        self.proc.wait(10)
        self._close_log()

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            signal_group(self.proc, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(10)
        # Workers of a stopped supervisor, or a supervisor that did not stop in time.
        signal_group(self.proc, signal.SIGKILL)
        self.proc.wait(10)
        self._close_log()

    def restart(self) -> OkuraServer:
        self.kill()
        return self.start()

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def _close_log(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None

    def log_tail(self, n: int = 60) -> str:
        return tail(self.log_path, n)

    # -- the data directory ----------------------------------------------------------------

    @property
    def blob_dir(self) -> Path:
        return self.data_dir / "blobs" / "blobs"

    @property
    def upload_dir(self) -> Path:
        return self.data_dir / "blobs" / "uploads"

    def blob_files(self) -> list[Path]:
        return sorted(p for p in self.blob_dir.rglob("*") if p.is_file())

    def upload_files(self) -> list[Path]:
        return sorted(p for p in self.upload_dir.iterdir()) if self.upload_dir.exists() else []


def host(server: OkuraServer) -> str:
    """HOST:PORT of a server, as image references name it."""
    return f"127.0.0.1:{server.port}"


@dataclass
class Replicas:
    """Two servers sharing one database and one bucket."""

    a: OkuraServer
    b: OkuraServer

    def __iter__(self):
        return iter((self.a, self.b))
