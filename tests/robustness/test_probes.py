"""TLS handshakes and garbage sent to the plain HTTP port must not hurt the server."""

from __future__ import annotations

import os
import random
import socket
import ssl
import struct
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from tests.support.digests import sha256

pytestmark = pytest.mark.e2e

PROBE_TIMEOUT = 5.0


def real_client_hello(server_name: str = "registry.example") -> bytes:
    """The first flight of a real TLS client (what `docker login https://…` sends)."""
    ctx = ssl.create_default_context()
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = ctx.wrap_bio(incoming, outgoing, server_hostname=server_name)
    with pytest.raises(ssl.SSLWantReadError):
        tls.do_handshake()
    return outgoing.read()


def minimal_client_hello() -> bytes:
    """A hand-built TLS 1.0 record carrying a ClientHello."""
    body = (
        b"\x03\x03"
        + os.urandom(32)
        + b"\x00"  # no session id
        + struct.pack(">H", 4)
        + b"\x13\x01\xc0\x2f"  # two cipher suites
        + b"\x01\x00"  # null compression
        + struct.pack(">H", 0)  # no extensions
    )
    handshake = b"\x01" + struct.pack(">I", len(body))[1:] + body
    return b"\x16\x03\x01" + struct.pack(">H", len(handshake)) + handshake


def probe(port: int, payload: bytes) -> tuple[bytes, float]:
    """Send `payload` on a new connection; read until the server closes it. Fails on a hang."""
    start = time.monotonic()
    received = b""
    with socket.create_connection(("127.0.0.1", port), timeout=PROBE_TIMEOUT) as s:
        s.settimeout(PROBE_TIMEOUT)
        try:
            s.sendall(payload)
        except (BrokenPipeError, ConnectionResetError):
            return received, time.monotonic() - start
        while True:
            try:
                chunk = s.recv(65536)
            except ConnectionResetError:
                break
            except TimeoutError:
                raise AssertionError(
                    f"server neither answered nor closed within {PROBE_TIMEOUT}s for {payload[:20]!r}"
                ) from None
            if not chunk:
                break
            received += chunk
    return received, time.monotonic() - start


def assert_healthy(server) -> None:
    assert server.alive(), server.log_tail()
    start = time.monotonic()
    r = httpx.get(f"{server.url}/v2/", timeout=5)
    assert r.status_code == 200
    assert time.monotonic() - start < 2.0


def test_tls_client_hello_on_plain_port(server):
    hellos = [real_client_hello(), minimal_client_hello()]
    assert all(h[:3] == b"\x16\x03\x01" for h in hellos)
    for i in range(50):
        received, _elapsed = probe(server.port, hellos[i % 2])
        # Answering with an HTTP 400 (or just closing) is right; anything else is not.
        assert received == b"" or received.startswith(b"HTTP/1.1 400"), received[:200]
    assert_healthy(server)


_rng = random.Random(4)
GARBAGE = [
    # Random bytes, led by one that cannot start a request line (a random first byte may be
    # the start of a method name, and then the server rightly waits for the rest).
    b"\x01",
    b"\x02" + _rng.randbytes(63),
    b"\xfe" + _rng.randbytes(4095),
    b"\x00" * 1024,
    b"\xff" * 1024,
    b"HELLO\r\n\r\n",
    b"GET /v2/ HTTP/9.9\r\n\r\n",
    b"GET /v2/ HTTP/1.1\r\nHost: x\r\nBad Header Without Colon\r\n\r\n",
    b"GET /v2/ HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n",
    b"GET /v2/ HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    b"PATCH /v2/a/blobs/uploads/x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nnot-hex\r\n",
    b"SSH-2.0-OpenSSH_9.6\r\n",
    b"\x16\x03\x01\x00\x05hello",  # a truncated TLS record
    b"\x80\x2e\x01\x00\x02\x00\x15\x00\x00\x00\x10",  # SSLv2-style hello
    b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",  # HTTP/2 preface without upgrade
]


def test_garbage_on_plain_port(server):
    for payload in GARBAGE:
        received, _elapsed = probe(server.port, payload)
        assert b" 500 " not in received.split(b"\r\n", 1)[0], (payload[:40], received[:200])
    assert_healthy(server)


INCOMPLETE = [
    b"",  # connect and say nothing
    b"\r\n\r\n",  # empty lines before a request line are allowed (RFC 9112 2.2): still waiting
    b"GET /v2/ HT",
    b"GET /v2/ HTTP/1.1\r\nHost: x\r\n",
    b"PATCH /v2/a/blobs/uploads/x HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nabc",
]


def test_incomplete_requests_do_not_block_others(server):
    """Connections that stall mid-request occupy only themselves."""
    held = []
    try:
        for i in range(50):
            s = socket.create_connection(("127.0.0.1", server.port), timeout=PROBE_TIMEOUT)
            held.append(s)
            s.sendall(INCOMPLETE[i % len(INCOMPLETE)])
        assert_healthy(server)
        # A stalled connection that finally completes its request is served.
        s = held[1]  # sent only empty lines
        s.sendall(b"GET /v2/ HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        s.settimeout(PROBE_TIMEOUT)
        assert s.recv(65536).startswith(b"HTTP/1.1 200")
    finally:
        for s in held:
            s.close()
    assert_healthy(server)


def test_probes_in_parallel_with_real_traffic(server):
    hello = real_client_hello()
    data = os.urandom(100_000)
    digest = sha256(data)
    with ThreadPoolExecutor(16) as pool:
        probes = [pool.submit(probe, server.port, hello if i % 3 else b"\x00" + os.urandom(199)) for i in range(60)]
        r = httpx.post(f"{server.url}/v2/probe/app/blobs/uploads/", params={"digest": digest}, content=data, timeout=10)
        assert r.status_code == 201, r.text
        for future in probes:
            future.result()
    r = httpx.get(f"{server.url}/v2/probe/app/blobs/{digest}", timeout=10)
    assert r.content == data
    assert_healthy(server)
