"""Blob GETs from the filesystem driver go out with sendfile(2) under uvicorn: the bytes,
ranges and headers must be exactly what the portable path serves."""

from __future__ import annotations

import hashlib
import os
import re

import httpx
import pytest

from tests.support.digests import sha256

pytestmark = pytest.mark.e2e


def _zero_copy_bytes(client: httpx.Client) -> float:
    text = client.get("/metrics").text
    m = re.search(r"^okura_http_zero_copy_bytes_total (\S+)$", text, re.M)
    return float(m.group(1)) if m else 0.0


def test_blob_bodies_and_ranges_are_exact(server):
    data = os.urandom(9 * 1024 * 1024 + 123)  # not a multiple of any chunk or page size
    digest = sha256(data)
    with httpx.Client(base_url=server.url, timeout=30) as client:
        r = client.post("/v2/zc/blob/blobs/uploads/", params={"digest": digest}, content=data)
        assert r.status_code == 201, r.text
        before = _zero_copy_bytes(client)

        r = client.get(f"/v2/zc/blob/blobs/{digest}")
        assert r.status_code == 200
        assert r.headers["Content-Length"] == str(len(data))
        assert r.headers["Docker-Content-Digest"] == digest
        assert hashlib.sha256(r.content).hexdigest() == digest.split(":")[1]

        for header, expected, content_range in [
            ("bytes=0-0", data[:1], f"bytes 0-0/{len(data)}"),
            ("bytes=4096-8191", data[4096:8192], f"bytes 4096-8191/{len(data)}"),
            ("bytes=1000001-", data[1000001:], f"bytes 1000001-{len(data) - 1}/{len(data)}"),
            ("bytes=-777", data[-777:], f"bytes {len(data) - 777}-{len(data) - 1}/{len(data)}"),
        ]:
            r = client.get(f"/v2/zc/blob/blobs/{digest}", headers={"Range": header})
            assert r.status_code == 206, header
            assert r.headers["Content-Range"] == content_range
            assert r.content == expected, header

        # Several GETs on one keep-alive connection: each body ends exactly where it should.
        for _ in range(3):
            r = client.get(f"/v2/zc/blob/blobs/{digest}", headers={"Range": "bytes=10-19"})
            assert r.content == data[10:20]
        sent = _zero_copy_bytes(client) - before
    expected_total = len(data) + 1 + 4096 + (len(data) - 1000001) + 777 + 3 * 10
    assert sent == expected_total, "the bodies did not go through sendfile"


def _read_exactly(sock, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            break
        data += chunk
    return data


def test_bytes_never_reach_another_connection(server):
    """A client that closes mid-download and a new client that connects at once: the new
    connection gets its own answer, never the rest of the old body (the descriptor number
    of the closed socket is handed to the next connection by the kernel)."""
    import socket
    import struct

    data = os.urandom(32 * 1024 * 1024)
    digest = sha256(data)
    with httpx.Client(base_url=server.url, timeout=30) as client:
        assert client.post("/v2/zc/cross/blobs/uploads/", params={"digest": digest}, content=data).status_code == 201
    strays = []
    for attempt in range(60):
        sock = socket.create_connection(("127.0.0.1", server.port))
        sock.sendall(f"GET /v2/zc/cross/blobs/{digest} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        head = _read_exactly(sock, 64 * 1024)
        if not head.startswith(b"HTTP/1.1 200"):
            strays.append((attempt, "blob GET", head[:8]))
        if attempt % 2:  # half the time a reset rather than an orderly close
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.close()
        fresh = socket.create_connection(("127.0.0.1", server.port))
        fresh.settimeout(10)
        fresh.sendall(b"GET /v2/ HTTP/1.1\r\nHost: x\r\n\r\n")
        first = _read_exactly(fresh, 8)
        if first != b"HTTP/1.1":
            strays.append((attempt, "GET /v2/", first))
        fresh.close()
    assert strays == [], f"{len(strays)} connections got another response's bytes first: {strays[:3]}"
    assert server.alive()


def test_client_vanishing_mid_body_is_not_an_error(server):
    import socket
    import time

    data = os.urandom(32 * 1024 * 1024)
    digest = sha256(data)
    with httpx.Client(base_url=server.url, timeout=30) as client:
        assert client.post("/v2/zc/gone/blobs/uploads/", params={"digest": digest}, content=data).status_code == 201
        for _ in range(5):
            sock = socket.create_connection(("127.0.0.1", server.port))
            sock.sendall(f"GET /v2/zc/gone/blobs/{digest} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
            assert sock.recv(65536).startswith(b"HTTP/1.1 200")
            sock.close()  # with most of the body unsent
        time.sleep(0.5)
        r = client.get(f"/v2/zc/gone/blobs/{digest}")
        assert r.status_code == 200 and r.content == data
    log = server.log_path.read_text(errors="replace")
    assert "level=error" not in log and "Traceback" not in log, log[-3000:]
