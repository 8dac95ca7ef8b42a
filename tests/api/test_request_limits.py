"""Request limits (the Config resource's spec.requests, as on OpenShift's registry) on a real
`okura serve` under real concurrent load: set live through the Config API, reads beyond
maxRunning + maxInQueue are refused with 429 TOOMANYREQUESTS and Retry-After, the admitted
ones get their whole blob, writes are not held by the read limits, and maxRunning 0 lifts
the limit again.

The clients read slowly on purpose: a blob slot is held until the last byte is sent, and a
client with a small receive window that pauses before reading keeps its slot busy."""

from __future__ import annotations

import hashlib
import os
import socket
import struct
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import httpx
import pytest

from tests.support.registries import Registry, start_registry

CONFIG = "/apis/imageregistry.operator.openshift.io/v1/configs/cluster"
REPO = "limits/app"
BLOB_SIZE = 8 << 20  # more than the server's socket send buffer (4 MiB here): sendfile must wait for the client
CLIENTS = 20
HOLD = 2.0  # seconds an admitted client pauses before reading its body
RECEIVE_WINDOW = 16 << 10


@dataclass
class Answer:
    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    yield from start_registry(tmp_path_factory.mktemp("okura-request-limits"))


@pytest.fixture(scope="module")
def blob(registry: Registry) -> tuple[str, bytes]:
    data = os.urandom(BLOB_SIZE)
    return push_blob(registry, data), data


# -- helpers ------------------------------------------------------------------------------------


def push_blob(registry: Registry, data: bytes) -> str:
    """A monolithic upload over plain HTTP: POST a session, PUT the bytes with their digest."""
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    with httpx.Client(base_url=registry.url, timeout=30) as c:
        started = c.post(f"/v2/{REPO}/blobs/uploads/")
        assert started.status_code == 202, f"{started.status_code} {started.text[:300]}"
        done = c.put(started.headers["Location"], params={"digest": digest}, content=data)
        assert done.status_code == 201, f"{done.status_code} {done.text[:300]}"
    return digest


def set_read_limits(registry: Registry, **limits: object) -> None:
    """PATCH spec.requests.read of the Config resource (a JSON merge patch; auth is off)."""
    patch = {"spec": {"requests": {"read": limits}}}
    with httpx.Client(base_url=registry.url, timeout=10) as c:
        r = c.patch(CONFIG, json=patch, headers={"Content-Type": "application/merge-patch+json"})
    assert r.status_code == 200, f"PATCH {CONFIG} -> {r.status_code} {r.text[:500]}"


def slow_get(port: int, path: str, hold: float) -> Answer:
    """GET over a raw socket with a small receive window; after a 200's headers, wait `hold`
    seconds before reading the body (the server's sendfile blocks meanwhile)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECEIVE_WINDOW)  # before connect: caps the window
        sock.settimeout(30)
        sock.connect(("127.0.0.1", port))
        request = f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n"
        sock.sendall(request.encode())
        received = b""
        while b"\r\n\r\n" not in received:
            chunk = sock.recv(4096)
            assert chunk, f"connection closed before the headers: {received!r}"
            received += chunk
        head, body = received.split(b"\r\n\r\n", 1)
        status_line, *lines = head.decode("latin-1").split("\r\n")
        answer = Answer(int(status_line.split()[1]))
        for line in lines:
            name, _, value = line.partition(":")
            answer.headers[name.strip().lower()] = value.strip()
        if answer.status == 200:
            time.sleep(hold)
        parts = [body]
        while chunk := sock.recv(1 << 20):
            parts.append(chunk)
        answer.body = b"".join(parts)
        return answer


def abandon(port: int, path: str) -> int:
    """GET, read the status line, then drop the connection (a reset) mid-body; the status."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECEIVE_WINDOW)
        sock.settimeout(30)
        sock.connect(("127.0.0.1", port))
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode())
        status = int(sock.recv(4096).split()[1])
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # close = RST
    return status


def burst(registry: Registry, path: str, clients: int, hold: float) -> list[Answer]:
    """`clients` slow GETs of `path` started together."""
    start = threading.Barrier(clients)

    def one() -> Answer:
        start.wait()
        return slow_get(registry.port, path, hold)

    with ThreadPoolExecutor(clients) as pool:
        futures = [pool.submit(one) for _ in range(clients)]
        return [f.result(timeout=60) for f in futures]


def throttled_reads(registry: Registry) -> float:
    with httpx.Client(base_url=registry.url, timeout=10) as c:
        text = c.get("/metrics").text
    for line in text.splitlines():
        if line.startswith('okura_requests_throttled_total{kind="read"}'):
            return float(line.split()[-1])
    return 0.0


def load_with_a_write(registry: Registry, path: str) -> tuple[list[Answer], float | None]:
    """CLIENTS slow readers of `path` together, and a blob upload while they hold their slots:
    the answers, and how long the upload took (None: it did not finish)."""
    write: dict[str, float] = {}

    def upload_during_load() -> None:
        time.sleep(0.5)  # the admitted reads hold their slots by now
        started = time.monotonic()
        push_blob(registry, os.urandom(256 << 10))
        write["seconds"] = time.monotonic() - started

    writer = threading.Thread(target=upload_during_load)
    writer.start()
    answers = burst(registry, path, CLIENTS, HOLD)
    writer.join(30)
    return answers, write.get("seconds")


# -- the test -----------------------------------------------------------------------------------


def test_read_limits_under_concurrent_load(registry: Registry, blob: tuple[str, bytes]) -> None:
    digest, data = blob
    path = f"/v2/{REPO}/blobs/{digest}"
    set_read_limits(registry, maxRunning=2, maxInQueue=2, maxWaitInQueue="1s")
    throttled_before = throttled_reads(registry)
    mark = registry.mark()
    # The replica that took the PATCH applies it at once; poll anyway, as for any replica.
    deadline = time.monotonic() + 5
    while True:
        answers, write_seconds = load_with_a_write(registry, path)
        if any(a.status == 429 for a in answers) or time.monotonic() > deadline:
            break

    served = [a for a in answers if a.status == 200]
    refused = [a for a in answers if a.status == 429]
    assert len(served) + len(refused) == CLIENTS, sorted(a.status for a in answers)
    assert 1 <= len(served) <= 4, f"{len(served)} admitted with maxRunning=2, maxInQueue=2"
    assert len(refused) >= CLIENTS - 4
    for answer in served:
        assert int(answer.headers["content-length"]) == len(data)
        assert answer.body == data, "an admitted client got a truncated or wrong body"
    for answer in refused:
        assert answer.headers["retry-after"].isdigit() and int(answer.headers["retry-after"]) >= 1
        assert answer.headers["content-type"].startswith("application/json")
        assert answer.headers["docker-distribution-api-version"] == "registry/2.0"
        error = httpx.Response(429, content=answer.body).json()["errors"][0]
        assert error["code"] == "TOOMANYREQUESTS"
        assert "maximum of 2 read requests" in error["message"]
    assert write_seconds is not None, "the blob upload during the read load did not finish"
    assert write_seconds < 1.0, f"the upload took {write_seconds:.2f}s: held by the read limits?"

    # Counted and logged like any answer.
    assert throttled_reads(registry) - throttled_before >= len(refused)
    logged = [e for e in registry.access(mark) if e["path"] == path]
    assert sum(e["status"] == "429" for e in logged) == len(refused)

    # The load is over: a read is served at once.
    with httpx.Client(base_url=registry.url, timeout=30) as c:
        r = c.get(path)
    assert r.status_code == 200 and r.content == data

    # Clients that leave mid-blob give their slots back: two slots and two places in line
    # serve four short readers in full only if nothing leaked.
    assert [abandon(registry.port, path) for _ in range(2)] == [200, 200]
    deadline = time.monotonic() + 5
    while True:
        answers = burst(registry, path, 4, 0.3)
        if all(a.status == 200 for a in answers) or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert [a.status for a in answers] == [200] * 4, "slots of the clients that left were not released"

    # maxRunning 0 lifts the limit, live: a burst of slow readers is served in full.
    set_read_limits(registry, maxRunning=0)
    deadline = time.monotonic() + 5
    while True:
        answers = burst(registry, path, 8, 0.3)
        if all(a.status == 200 for a in answers) or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert [a.status for a in answers] == [200] * 8
    assert all(a.body == data for a in answers)
    registry.assert_alive()
