"""A private dockerd (20.10, legacy builder) and the docker CLI talking to it."""

from __future__ import annotations

import io
import os
import re
import shutil
import subprocess
import tarfile
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx

from tests.support.clients import require_binaries, require_root, run_client, unavailable
from tests.support.logs import tail
from tests.support.processes import kill_process_group, spawn, track


@dataclass
class Docker:
    root: Path
    proc: subprocess.Popen
    log_path: Path
    env: dict[str, str]

    def run(self, *args: str, check: bool = True, timeout: float = 300) -> subprocess.CompletedProcess:
        return run_client(["docker", *args], self.env, check=check, timeout=timeout)

    def export(self, image: str) -> dict[str, bytes]:
        """The files of an image's root filesystem (docker create + docker export)."""
        cid = self.run("create", image, "/nonexistent").stdout.strip()  # created, never started
        try:
            data = subprocess.run(
                ["docker", "export", cid], env=self.env, capture_output=True, timeout=120, check=True
            ).stdout
        finally:
            self.run("rm", "-f", cid, check=False)
        out = {}
        with tarfile.open(fileobj=io.BytesIO(data)) as tar:
            for member in tar:
                if member.isfile():
                    f = tar.extractfile(member)
                    assert f is not None
                    out["/" + member.name.lstrip("./")] = f.read()
        return out


def start_dockerd(insecure_registry: str) -> Iterator[Docker]:
    """A private dockerd (own data-root, exec-root, socket, containerd namespace; vfs; no networking)
    that may talk plain HTTP to `insecure_registry` (HOST:PORT); killed when the generator ends."""
    require_binaries("dockerd", "docker")
    require_root()
    # short path: the daemon's unix sockets (including containerd's, under exec-root) must fit in 108 bytes
    root = Path(tempfile.mkdtemp(prefix="okura-e2e-dockerd-", dir="/tmp"))
    for d in ("data", "exec", "cli", "home"):
        (root / d).mkdir()
    log_path = root / "dockerd.log"
    namespace = f"okura-e2e-{os.getpid()}"
    sock = root / "docker.sock"
    argv = [
        "dockerd",
        "--data-root",
        str(root / "data"),
        "--exec-root",
        str(root / "exec"),
        "--pidfile",
        str(root / "dockerd.pid"),
        "-H",
        f"unix://{sock}",
        "--iptables=false",
        "--ip6tables=false",
        "--ip-masq=false",
        "--bridge=none",
        "--storage-driver=vfs",
        "--insecure-registry",
        insecure_registry,
        "--containerd-namespace",
        namespace,
        "--containerd-plugins-namespace",
        namespace + "-plugins",
    ]
    with open(log_path, "wb") as log:
        proc = track(spawn(argv, log))
    env = {k: v for k, v in os.environ.items() if not k.startswith("DOCKER_")}
    env.update(
        DOCKER_HOST=f"unix://{sock}", DOCKER_CONFIG=str(root / "cli"), HOME=str(root / "home"), DOCKER_BUILDKIT="0"
    )
    docker = Docker(root=root, proc=proc, log_path=log_path, env=env)
    try:
        deadline = time.monotonic() + 90
        ready = False
        while time.monotonic() < deadline and proc.poll() is None:
            if sock.exists():
                try:
                    with httpx.Client(transport=httpx.HTTPTransport(uds=str(sock)), timeout=2) as c:
                        if c.get("http://docker/_ping").status_code == 200:
                            ready = True
                            break
                except httpx.HTTPError:
                    pass
            time.sleep(0.2)
        if not ready:
            state = f"exited with {proc.returncode}" if proc.poll() is not None else "did not answer /_ping in 90s"
            unavailable(f"dockerd could not be started ({state}); log tail:\n{tail(log_path, 25)}")
        yield docker
    finally:
        kill_process_group(proc, grace=30)
        shutil.rmtree(root, ignore_errors=True)


def pushed_digest(output: str, tag: str) -> str:
    m = re.search(rf"^{re.escape(tag)}: digest: (sha256:[0-9a-f]{{64}}) size: \d+$", output, re.MULTILINE)
    assert m, f"no digest line in docker push output:\n{output}"
    return m.group(1)
