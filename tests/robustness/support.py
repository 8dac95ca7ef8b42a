"""A real `okura serve` process for robustness tests, and client helpers around it."""

from __future__ import annotations

import contextlib
import hashlib
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx

PORTS = range(5200, 5300)
OKURA = str(Path(sys.executable).with_name("okura"))
MiB = 1 << 20

_used_ports: set[int] = set()


def free_port() -> int:
    """A port in 5200-5299 nobody listens on, not handed out before in this session
    (a port just released may still have connections in TIME_WAIT)."""
    candidates = [p for p in PORTS if p not in _used_ports]
    random.shuffle(candidates)
    for port in candidates:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        _used_ports.add(port)
        return port
    raise RuntimeError("no free port in 5200-5299")


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


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
        self.port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith(("OKURA_", "PROMETHEUS_"))}
        env.update({"OKURA_LOG_ACCESS_LOG": "false", "OKURA_LOG_LEVEL": "warning", **self.env})
        args = [OKURA, "serve", "--data-dir", str(self.data_dir), "--addr", f"127.0.0.1:{self.port}"]
        if self.workers > 1:
            args += ["--workers", str(self.workers)]
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - kept open while the server runs
        self._log.write(f"\n=== start {' '.join(args)}\n".encode())
        self._log.flush()
        self.proc = subprocess.Popen(
            args, env=env, stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True
        )
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
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)
        self._close_log()

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(10)
        # Workers of a stopped supervisor, or a supervisor that did not stop in time.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
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
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""

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


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")


class RssSampler:
    """Samples a process's resident set size every `interval` seconds in a thread."""

    def __init__(self, pid: int, interval: float = 0.05):
        self.pid = pid
        self.interval = interval
        self.samples: list[int] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(OSError, RuntimeError):
                self.samples.append(rss_kib(self.pid))
            self._stop.wait(self.interval)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def peak_mib(self) -> float:
        return max(self.samples) / 1024


class PatternBlob:
    """A large blob generated block by block: never held in memory, digest known as it streams."""

    def __init__(self, size: int, seed: int, block: int = MiB):
        self.size = size
        self.block = block
        self._base = random.Random(seed).randbytes(block)

    def blocks(self, start: int = 0, end: int | None = None) -> Iterator[bytes]:
        """Bytes [start, end) in pieces of at most one block."""
        end = self.size if end is None else end
        pos = start
        while pos < end:
            index, within = divmod(pos, self.block)
            block = index.to_bytes(8, "little") + self._base[8:]
            piece = block[within : within + min(self.block - within, end - pos)]
            yield piece
            pos += len(piece)

    def digest(self) -> str:
        h = hashlib.sha256()
        for piece in self.blocks():
            h.update(piece)
        return "sha256:" + h.hexdigest()


def error_code(response: httpx.Response) -> str:
    return response.json()["errors"][0]["code"]


def parse_range(value: str) -> int:
    """The size an upload's `Range: 0-<last>` header reports ("0-0" also means empty)."""
    start, _, last = value.partition("-")
    assert start == "0", value
    return int(last) + 1


async def push_blob_chunked(client: httpx.AsyncClient, repo: str, data: bytes, chunk: int = 256 * 1024) -> str:
    """POST, PATCH chunks with Content-Range, closing PUT: the docker/podman way."""
    digest = sha256(data)
    r = await client.post(f"/v2/{repo}/blobs/uploads/")
    assert r.status_code == 202, r.text
    location = r.headers["Location"]
    for start in range(0, len(data), chunk):
        part = data[start : start + chunk]
        r = await client.patch(
            location,
            content=part,
            headers={
                "Content-Type": "application/octet-stream",
                "Content-Range": f"{start}-{start + len(part) - 1}",
            },
        )
        assert r.status_code == 202, r.text
        location = r.headers["Location"]
    r = await client.put(location, params={"digest": digest})
    assert r.status_code == 201, r.text
    assert r.headers["Docker-Content-Digest"] == digest
    return digest


class Tmpfs:
    """A small tmpfs mounted for a test: a disk that can be filled. Needs root."""

    def __init__(self, path: Path, size: str):
        self.path = Path(path)
        self.size = size

    def mount(self) -> Tmpfs:
        self.path.mkdir(parents=True, exist_ok=True)
        result = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={self.size}", "tmpfs", str(self.path)], capture_output=True, text=True
        )
        if result.returncode != 0:
            import pytest

            pytest.skip(f"cannot mount a tmpfs here: {result.stderr.strip()}")
        return self

    def fill(self) -> Path:
        """Take every free byte with a filler file; returns it (delete it to free the disk)."""
        filler = self.path / "filler"
        fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            for size in (MiB, 65536, 4096, 512, 1):
                block = b"\0" * size
                with contextlib.suppress(OSError):
                    while True:
                        os.write(fd, block)
        finally:
            os.close(fd)
        return filler

    def used_by(self, sub: str) -> int:
        """Bytes allocated under a subdirectory."""
        total = 0
        for p in (self.path / sub).rglob("*"):
            with contextlib.suppress(FileNotFoundError):
                if p.is_file():
                    total += p.stat().st_blocks * 512
        return total

    def unmount(self) -> None:
        subprocess.run(["umount", "-l", str(self.path)], capture_output=True)
