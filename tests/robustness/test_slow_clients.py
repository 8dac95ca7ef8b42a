"""Slow and abusive clients against real server processes: hundreds of slowloris
connections while others push and pull, a request body that stalls midway (cut, then the
upload resumes), the cap on open connections, idle keep-alive connections and the upload
chunk limit. Plus, in process, the rule that time the server holds a body back is not the
client's stall.

TEST_SLOWLORIS_CONNECTIONS sets how many slowloris connections to open (default 300)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import resource
import selectors
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from uvicorn.server import ServerState

from registry.server.options import HttpLimits, ServerConfig
from registry.server.protocol import RegistryHttpProtocol
from tests.support.digests import sha256
from tests.support.sockets import connect, header, read_response, read_until_closed

pytestmark = pytest.mark.e2e

SLOWLORIS = int(os.environ.get("TEST_SLOWLORIS_CONNECTIONS", "300"))
HEADER_TIMEOUT = 3.0
MAX_LATENCY = 2.0  # seconds, for every normal request served while under attack


# -- raw sockets ---------------------------------------------------------------------------


def _get_v2(sock: socket.socket) -> bytes:
    sock.sendall(b"GET /v2/ HTTP/1.1\r\nHost: x\r\n\r\n")
    return read_response(sock)


def _wait_until(condition: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout}s: {what}")
        time.sleep(0.05)


def _room_for_connections(wanted: int) -> int:
    """Raise this process's open-file limit toward what `wanted` sockets need (the server,
    started afterwards, inherits it); how many connections fit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    need = wanted + 512  # the test's and the server's other files
    if soft < need and (hard == resource.RLIM_INFINITY or soft < hard):
        soft = need if hard == resource.RLIM_INFINITY else min(need, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    return min(wanted, soft - 512)


# -- (a) slowloris -------------------------------------------------------------------------


class Slowloris(threading.Thread):
    """`count` connections, each sending an endless request head one byte a second;
    records when the server closed each one and what it answered."""

    HEAD = b"GET /v2/ HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 4096

    def __init__(self, port: int, count: int, give_up: float):
        super().__init__(daemon=True)
        self.port, self.count, self.give_up = port, count, give_up
        self.opened: list[float] = []
        self.closed: list[float | None] = [None] * count
        self.answers: list[bytes] = [b""] * count
        self.ready = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self._run()
        except BaseException as e:  # reported by the test
            self.error = e
            self.ready.set()

    def _run(self) -> None:
        selector = selectors.DefaultSelector()
        socks = []
        for i in range(self.count):
            sock = socket.create_connection(("127.0.0.1", self.port))
            sock.setblocking(False)
            self.opened.append(time.monotonic())
            selector.register(sock, selectors.EVENT_READ, i)
            socks.append(sock)
        self.ready.set()
        deadline, sent, next_byte = time.monotonic() + self.give_up, 0, time.monotonic()
        while selector.get_map() and time.monotonic() < deadline:
            if time.monotonic() >= next_byte:
                self._trickle(selector, sent)
                sent, next_byte = sent + 1, next_byte + 1.0
            for key, _ in selector.select(timeout=max(0.0, next_byte - time.monotonic())):
                self._read(selector, key.fileobj, key.data)
        for sock in socks:
            sock.close()

    def _trickle(self, selector: selectors.BaseSelector, sent: int) -> None:
        for key in list(selector.get_map().values()):
            with contextlib.suppress(OSError):  # closed by the server: seen when reading
                key.fileobj.send(self.HEAD[sent : sent + 1])

    def _read(self, selector: selectors.BaseSelector, sock: Any, i: int) -> None:
        try:
            data = sock.recv(65536)
        except BlockingIOError:
            return
        except ConnectionResetError:
            data = b""
        if data:
            self.answers[i] += data
            return
        self.closed[i] = time.monotonic()
        selector.unregister(sock)


class NormalClients:
    """Threads pushing and pulling blobs, each request timed; one thread opens a new
    connection for every request, the others keep theirs."""

    def __init__(self, url: str, threads: int = 3):
        self.url = url
        self.latencies: list[float] = []
        self.failures: list[str] = []
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self._run, args=(i,), daemon=True) for i in range(threads)]

    def __enter__(self) -> NormalClients:
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(30)

    def _run(self, n: int) -> None:
        keep = 0 if n == 0 else 1
        with httpx.Client(base_url=self.url, timeout=10, limits=httpx.Limits(max_keepalive_connections=keep)) as client:
            i = 0
            while not self.stop.is_set():
                self._push_and_pull(client, f"load/c{n}", os.urandom(64 * 1024) + f"{n}-{i}".encode())
                i += 1

    def _push_and_pull(self, client: httpx.Client, repo: str, data: bytes) -> None:
        digest = sha256(data)
        self._timed(lambda: client.post(f"/v2/{repo}/blobs/uploads/", params={"digest": digest}, content=data), 201)
        self._timed(lambda: client.get(f"/v2/{repo}/blobs/{digest}"), 200, data)

    def _timed(self, call: Callable[[], httpx.Response], status: int, body: bytes | None = None) -> None:
        start = time.monotonic()
        try:
            r = call()
        except httpx.HTTPError as e:
            self.failures.append(repr(e))
            return
        self.latencies.append(time.monotonic() - start)
        if r.status_code != status or (body is not None and r.content != body):
            self.failures.append(f"{r.request.method} {r.request.url.path}: {r.status_code} {r.text[:200]}")


def test_slowloris_connections_are_cut_while_others_push_and_pull(start_server):
    count = _room_for_connections(SLOWLORIS)
    server = start_server(
        env={"OKURA_HTTP_HEADER_TIMEOUT": f"{HEADER_TIMEOUT:g}s", "OKURA_HTTP_MAX_CONNECTIONS": str(count + 100)}
    )
    attack = Slowloris(server.port, count, give_up=HEADER_TIMEOUT + 10)
    with NormalClients(server.url) as normal:
        attack.start()
        assert attack.ready.wait(30) and attack.error is None, attack.error
        attack.join(HEADER_TIMEOUT + 15)
    assert attack.error is None, attack.error
    assert server.alive(), server.log_tail()

    assert not normal.failures, normal.failures[:5]
    assert len(normal.latencies) >= 10, "the normal clients were hardly served"
    slowest = max(normal.latencies)
    assert slowest < MAX_LATENCY, f"a normal request took {slowest:.2f}s"

    lifetimes = [
        closed - opened for opened, closed in zip(attack.opened, attack.closed, strict=True) if closed is not None
    ]
    assert len(lifetimes) == count, f"{count - len(lifetimes)} slowloris connections were never closed"
    assert max(lifetimes) < HEADER_TIMEOUT + 2, f"one lived {max(lifetimes):.1f}s"
    assert all(a.startswith(b"HTTP/1.1 408 ") for a in attack.answers), {a[:40] for a in attack.answers}
    print(
        f"\nslowloris: {count} connections cut after {min(lifetimes):.1f}-{max(lifetimes):.1f}s; "
        f"{len(normal.latencies)} normal requests meanwhile, slowest {slowest * 1000:.0f} ms"
    )


# -- (b) a stalled request body ------------------------------------------------------------


def test_a_stalled_upload_body_is_cut_and_the_upload_resumes(start_server):
    server = start_server(env={"OKURA_HTTP_BODY_IDLE_TIMEOUT": "2s"})
    first, second = os.urandom(300_000), os.urandom(200_000)
    octets = {"Content-Type": "application/octet-stream"}
    with httpx.Client(base_url=server.url, timeout=10) as client:
        r = client.post("/v2/slow/app/blobs/uploads/")
        assert r.status_code == 202, r.text
        r = client.patch(
            r.headers["location"], content=first, headers={**octets, "Content-Range": f"0-{len(first) - 1}"}
        )
        assert r.status_code == 202 and r.headers["range"] == f"0-{len(first) - 1}", r.text
        location = r.headers["location"]

        # The second chunk stops halfway and the client goes quiet.
        sock = connect(server.port)
        end = len(first) + len(second) - 1
        head = (
            f"PATCH {location} HTTP/1.1\r\nHost: x\r\nContent-Type: application/octet-stream\r\n"
            f"Content-Length: {len(second)}\r\nContent-Range: {len(first)}-{end}\r\n\r\n"
        )
        sock.sendall(head.encode() + second[:100_000])
        start = time.monotonic()
        answer = read_until_closed(sock)
        elapsed = time.monotonic() - start
        assert answer.startswith(b"HTTP/1.1 408 "), answer[:300]
        assert b'"errors"' in answer and b"connection: close" in answer.lower()
        assert 1.5 < elapsed < 5, elapsed

        # The session kept the first chunk; the cut one left nothing behind.
        r = client.get(location)
        assert r.status_code == 204 and r.headers["range"] == f"0-{len(first) - 1}", (r.status_code, r.headers)
        # Resuming from there works, which also shows the cut PATCH let go of the session
        # (its handler got http.disconnect; otherwise this would wait for its lock).
        r = client.patch(location, content=second, headers={**octets, "Content-Range": f"{len(first)}-{end}"})
        assert r.status_code == 202 and r.headers["range"] == f"0-{end}", r.text
        digest = sha256(first + second)
        r = client.put(r.headers["location"], params={"digest": digest})
        assert r.status_code == 201, r.text
        assert client.get(f"/v2/slow/app/blobs/{digest}").content == first + second


class _Transport(asyncio.Transport):
    """What the protocol writes, and whether it paused reading or closed."""

    def __init__(self) -> None:
        super().__init__()
        self.written = bytearray()
        self.closed = False
        self.reading = True

    def write(self, data: Any) -> None:
        self.written += data

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def pause_reading(self) -> None:
        self.reading = False

    def resume_reading(self) -> None:
        self.reading = True

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"peername": ("127.0.0.1", 40000), "sockname": ("127.0.0.1", 5000)}.get(name, default)


async def test_time_the_server_holds_a_body_back_is_not_the_clients_stall():
    """The app is busy (it does not read), uvicorn pauses reading: no timeout however long
    that lasts. Once the app reads again and the client sends nothing, it is cut."""
    timeout = 0.3
    busy = asyncio.Event()
    received: list[dict[str, Any]] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await busy.wait()  # writing to storage, say
        while not received or received[-1]["type"] != "http.disconnect":
            received.append(await receive())

    config = ServerConfig(app, HttpLimits(body_idle_timeout=timeout), log_config=None, lifespan="off")
    protocol = RegistryHttpProtocol(config, ServerState(), {}, asyncio.get_running_loop())
    transport = _Transport()
    protocol.connection_made(transport)
    head = b"PATCH /v2/a/blobs/uploads/x HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n\r\n"
    protocol.data_received(head + b"a" * 100_000)  # past uvicorn's 64 KiB: it pauses reading
    assert not transport.reading
    await asyncio.sleep(3 * timeout)
    assert not transport.closed, "cut while the server held the body back"

    busy.set()
    resumed = time.monotonic()
    for _ in range(100):
        if received and received[-1]["type"] == "http.disconnect":
            break
        await asyncio.sleep(0.05)
    assert received and received[-1]["type"] == "http.disconnect", received[-1:]
    assert transport.reading and transport.closed
    assert timeout * 0.9 < time.monotonic() - resumed < timeout + 2
    assert bytes(transport.written).startswith(b"HTTP/1.1 408 ")
    assert sum(len(m.get("body", b"")) for m in received) == 100_000
    protocol.connection_lost(None)


# -- (c) max_connections -------------------------------------------------------------------


def _served_connection(port: int) -> socket.socket:
    """A connection the server serves: retried while the server may still count one that
    the client already closed."""

    def attempt() -> socket.socket | None:
        sock = connect(port)
        if _get_v2(sock).startswith(b"HTTP/1.1 200 "):
            return sock
        sock.close()
        return None

    return _wait_until(attempt, 5, "a connection was served")


def test_connections_beyond_max_connections_are_refused_at_once(start_server):
    server = start_server(env={"OKURA_HTTP_MAX_CONNECTIONS": "20"})
    held = [_served_connection(server.port) for _ in range(20)]

    # The 21st is answered before it sends a byte, and closed.
    start = time.monotonic()
    answer = read_until_closed(connect(server.port, timeout=5))
    assert time.monotonic() - start < 1.0
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 503 "), answer[:300]
    assert header(head, b"retry-after") == b"1" and header(head, b"connection") == b"close"
    assert b'"code": "UNAVAILABLE"' in body and b"too many connections" in body
    # A regular client sending its request at once sees the same answer.
    r = httpx.get(f"{server.url}/v2/", timeout=5)
    assert r.status_code == 503 and r.json()["errors"][0]["code"] == "UNAVAILABLE"

    # The first twenty are still open and served.
    assert all(_get_v2(sock).startswith(b"HTTP/1.1 200 ") for sock in held)

    # Closing five lets five others in, and no more.
    for sock in held[:5]:
        sock.close()
    held = held[5:] + [_served_connection(server.port) for _ in range(5)]
    assert read_until_closed(connect(server.port, timeout=5)).startswith(b"HTTP/1.1 503 ")
    for sock in held:
        sock.close()


# -- (d) idle keep-alive connections -------------------------------------------------------


def test_an_idle_keep_alive_connection_is_closed(start_server):
    server = start_server(env={"OKURA_HTTP_KEEPALIVE_TIMEOUT": "2s"})
    sock = connect(server.port)
    assert _get_v2(sock).startswith(b"HTTP/1.1 200 ")
    start = time.monotonic()
    assert read_until_closed(sock) == b""  # closed without a word
    assert 1.5 < time.monotonic() - start < 4


# -- uploads.max_chunk_size ----------------------------------------------------------------


def _stream(data: bytes, size: int = 65536) -> Iterator[bytes]:
    for i in range(0, len(data), size):
        yield data[i : i + size]


def test_a_chunk_over_max_chunk_size_is_413_and_the_session_goes_on(start_server):
    server = start_server(env={"OKURA_UPLOADS_MAX_CHUNK_SIZE": "1MiB"})
    small, big = os.urandom(512 * 1024), os.urandom(2 << 20)
    with httpx.Client(base_url=server.url, timeout=10) as client:
        location = client.post("/v2/big/app/blobs/uploads/").headers["location"]
        r = client.patch(location, content=small)
        assert r.status_code == 202, r.text
        location = r.headers["location"]
        for body in (big, _stream(big)):  # declared length, then streamed without one
            r = client.patch(location, content=body)
            assert r.status_code == 413 and r.json()["errors"][0]["code"] == "SIZE_INVALID", r.text
        r = client.get(location)
        assert r.headers["range"] == f"0-{len(small) - 1}"
        digest = sha256(small + small)
        r = client.put(location, params={"digest": digest}, content=small)
        assert r.status_code == 201, r.text
