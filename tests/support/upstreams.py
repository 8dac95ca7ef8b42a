"""Upstream registries for import tests: CNCF distribution (the Debian docker-registry binary,
anonymous, htpasswd or TLS) started on loopback, and helpers that push test images to any
registry over plain HTTP (fixtures: tests/imports/conftest.py)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import ssl
import subprocess
import time
import warnings
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from registry.imports.keyring import Credential
from tests.support.clients import require_binaries
from tests.support.digests import sha256
from tests.support.http import descriptor, put_manifest
from tests.support.logs import tail
from tests.support.media_types import OCI_CONFIG, OCI_INDEX, OCI_LAYER, OCI_MANIFEST
from tests.support.ports import allocate_port
from tests.support.processes import kill_process_group, spawn, track
from tests.support.registries import AuthRegistry

USER, PASSWORD = "alice", "correct-horse-battery"


@dataclass
class Pushed:
    digest: str
    content: bytes
    layers: list[bytes] = field(default_factory=list)


async def push_blob(client: httpx.AsyncClient, repo: str, data: bytes) -> str:
    """POST a session, PUT the bytes to its Location (distribution 2.8 has no single-POST upload). The digest
    is appended to the Location as is: re-encoding its query would break distribution's signed _state."""
    r = await client.post(f"/v2/{repo}/blobs/uploads/")
    assert r.status_code == 202, (r.status_code, r.text)
    location = r.headers["Location"]
    digest = sha256(data)
    url = f"{location}{'&' if '?' in location else '?'}digest={digest}"
    r = await client.put(url, content=data, headers={"Content-Type": "application/octet-stream"})
    assert r.status_code == 201, (r.status_code, r.text)
    return digest


async def push_image(
    client: httpx.AsyncClient, repo: str, tag: str | None, layer_sizes: tuple[int, ...] = (1024,), arch: str = "amd64"
) -> Pushed:
    config = json.dumps({"architecture": arch, "os": "linux", "nonce": os.urandom(8).hex()}).encode()
    await push_blob(client, repo, config)
    layers = [os.urandom(size) for size in layer_sizes]
    for layer in layers:
        await push_blob(client, repo, layer)
    manifest = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": descriptor(OCI_CONFIG, config),
        "layers": [descriptor(OCI_LAYER, layer) for layer in layers],
    }
    body = json.dumps(manifest).encode()
    r = await put_manifest(client, repo, tag or sha256(body), body, OCI_MANIFEST)
    assert r.status_code == 201, (r.status_code, r.text)
    return Pushed(sha256(body), body, layers)


async def push_index(client: httpx.AsyncClient, repo: str, tag: str) -> tuple[Pushed, list[Pushed]]:
    """Two platform images (by digest only) and an OCI index of them under `tag`."""
    children = [await push_image(client, repo, None, arch=arch) for arch in ("amd64", "arm64")]
    index = {
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [
            descriptor(OCI_MANIFEST, child.content, platform={"architecture": arch, "os": "linux"})
            for child, arch in zip(children, ("amd64", "arm64"), strict=True)
        ],
    }
    body = json.dumps(index).encode()
    r = await put_manifest(client, repo, tag, body, OCI_INDEX)
    assert r.status_code == 201, (r.status_code, r.text)
    return Pushed(sha256(body), body), children


# --- CNCF distribution ------------------------------------------------------------------------------------


@dataclass
class Distribution:
    proc: subprocess.Popen
    port: int
    scheme: str
    log_path: Path
    images: dict[str, Any] = field(default_factory=dict)

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.host}"


def bcrypt_line(user: str, password: str) -> str:
    """An htpasswd line; distribution accepts bcrypt only. bcrypt if installed, else the C library's crypt
    (libxcrypt knows $2b$), else `htpasswd -B` from apache2-utils. Cost 4: these tests are not about it."""
    with contextlib.suppress(ImportError):
        import bcrypt

        return f"{user}:{bcrypt.hashpw(password.encode(), bcrypt.gensalt(4)).decode()}"
    with warnings.catch_warnings(), contextlib.suppress(ImportError):
        warnings.simplefilter("ignore", DeprecationWarning)
        import crypt  # removed in Python 3.13

        hashed = crypt.crypt(password, crypt.mksalt(crypt.METHOD_BLOWFISH, rounds=16))
        if hashed and hashed.startswith("$2"):
            return f"{user}:{hashed}"
    if shutil.which("htpasswd"):
        out = subprocess.run(["htpasswd", "-nbBC", "4", user, password], capture_output=True, text=True, check=True)
        return out.stdout.strip()
    pytest.fail("no bcrypt: install python bcrypt, or apache2-utils (htpasswd)", pytrace=False)


def start_distribution(
    directory: Path, *, htpasswd: Path | None = None, tls: tuple[Path, Path] | None = None, ca: Path | None = None
) -> Iterator[Distribution]:
    """`docker-registry serve` on a free loopback port with filesystem storage; waits for GET /v2/."""
    require_binaries("docker-registry")
    directory.mkdir(parents=True, exist_ok=True)
    log_path = directory / "registry.log"
    # distribution reads REGISTRY_* variables over its config; AWS_CA_BUNDLE makes 2.8 panic at start
    env = {k: v for k, v in os.environ.items() if not k.startswith("REGISTRY_") and k != "AWS_CA_BUNDLE"}
    for _attempt in range(3):
        port = allocate_port()
        http: dict[str, Any] = {"addr": f"127.0.0.1:{port}", "secret": os.urandom(16).hex()}
        if tls:
            http["tls"] = {"certificate": str(tls[0]), "key": str(tls[1])}
        config: dict[str, Any] = {
            "version": 0.1,
            "log": {"level": "warn", "accesslog": {"disabled": True}},
            "storage": {"filesystem": {"rootdirectory": str(directory / "data")}, "delete": {"enabled": True}},
            "http": http,
        }
        if htpasswd:
            config["auth"] = {"htpasswd": {"realm": "okura-test", "path": str(htpasswd)}}
        config_path = directory / "config.yml"
        config_path.write_text(json.dumps(config, indent=2))  # YAML is a superset of JSON
        with open(log_path, "ab") as log:
            proc = track(spawn(["docker-registry", "serve", str(config_path)], log, env))
        registry = Distribution(proc, port, "https" if tls else "http", log_path)
        verify: ssl.SSLContext | bool = ssl.create_default_context(cafile=str(ca)) if ca else True
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and proc.poll() is None:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{registry.url}/v2/", timeout=2, verify=verify).status_code in (200, 401):
                    break
            time.sleep(0.1)
        if proc.poll() is None and time.monotonic() < deadline:
            try:
                yield registry
            finally:
                kill_process_group(proc, grace=5)
            return
        kill_process_group(proc, grace=5)
        if "address already in use" not in tail(log_path).lower():
            break
    pytest.fail(f"docker-registry did not start; log tail:\n{tail(log_path)}", pytrace=False)


# --- okura with auth on (the Docker token protocol at /openshift/token) ----------------------------------


@dataclass
class OkuraImages:
    registry: AuthRegistry
    private: Pushed
    public: Pushed
    tags: list[str]

    @property
    def host(self) -> str:
        return self.registry.host

    @property
    def admin(self) -> Credential:
        assert self.registry.admin is not None
        return Credential(self.registry.admin.username, self.registry.admin.token)


def token_requests(registry: AuthRegistry, since: int) -> list[dict[str, str]]:
    return [e for e in registry.access(since) if e["path"].startswith("/openshift/token")]


# --- stubs: raw asyncio HTTP/1.1 servers answering one request per connection ----------------------------


@dataclass
class Seen:
    method: str
    target: str  # path and query
    headers: dict[str, str]  # lowercase names

    @property
    def path(self) -> str:
        return urlsplit(self.target).path

    @property
    def query(self) -> dict[str, list[str]]:
        return parse_qs(urlsplit(self.target).query)


Handler = Callable[[Seen, asyncio.StreamWriter], Awaitable[None]]


async def send(writer: asyncio.StreamWriter, status: int, body: bytes = b"", headers: dict[str, str] | None = None):
    head = [f"HTTP/1.1 {status} X", f"Content-Length: {len(body)}", "Connection: close"]
    head += [f"{k}: {v}" for k, v in (headers or {}).items()]
    writer.write(("\r\n".join(head) + "\r\n\r\n").encode() + body)
    await writer.drain()


def reply(status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> Handler:
    async def handler(seen: Seen, writer: asyncio.StreamWriter) -> None:
        await send(writer, status, body, headers)

    return handler


class Stub:
    """Routes by path; records every request; closes TLS attempts at once (so insecure clients fall back to
    HTTP); counts connections, including refused TLS ones."""

    def __init__(self, bind: str = "127.0.0.1") -> None:
        self.bind = bind
        self.port = 0
        self.routes: dict[str, Handler] = {"/v2/": reply(200, b"{}")}
        self.seen: list[Seen] = []
        self.connections = 0
        self.finished = 0
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task] = set()

    @property
    def host(self) -> str:
        return f"{self.bind}:{self.port}"

    def requests(self, path: str) -> list[Seen]:
        return [s for s in self.seen if s.path == path]

    async def start(self) -> Stub:
        for _attempt in range(5):
            port = allocate_port()
            try:
                self._server = await asyncio.start_server(self._serve, self.bind, port)
            except OSError:
                continue
            self.port = port
            return self
        raise RuntimeError(f"no free port on {self.bind}")

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            first = await reader.readexactly(1)
            if first == b"\x16":  # a TLS handshake: this stub speaks plain HTTP only
                return
            head = (first + await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
            request_line, *lines = head.split("\r\n")
            method, target, _ = request_line.split(" ", 2)
            headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines if line)}
            seen = Seen(method, target, headers)
            self.seen.append(seen)
            await self.routes.get(seen.path, reply(404, b'{"errors":[{"code":"NOT_FOUND","message":"nope"}]}'))(
                seen, writer
            )
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass
        finally:
            self.finished += 1
            self._tasks.discard(task)
            writer.close()

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()
