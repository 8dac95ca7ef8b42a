"""Limits on what a client can make the server hold: the size and number of request
headers (431), and the time to send them (408, or a silent close for a connection that
says nothing). Real sockets against a real server process."""

from __future__ import annotations

import contextlib
import socket
import time

import httpx
import pytest

from tests.support.rss import rss_kib
from tests.support.sockets import connect, read_response, read_until_closed

pytestmark = pytest.mark.e2e

HEADER_TIMEOUT = "1s"


def _send_all_or_reset(sock: socket.socket, data: bytes) -> None:
    """Send, tolerating a server that answered and closed before taking everything."""
    with contextlib.suppress(BrokenPipeError, ConnectionResetError):
        sock.sendall(data)


@pytest.fixture
def limited(start_server):
    return start_server(env={"OKURA_HTTP_HEADER_TIMEOUT": HEADER_TIMEOUT})


def test_a_huge_header_is_431_and_closes(limited):
    sock = connect(limited.port)
    _send_all_or_reset(sock, b"GET /v2/ HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * (1 << 20) + b"\r\n\r\n")
    answer = read_until_closed(sock)
    assert answer.startswith(b"HTTP/1.1 431 "), answer[:200]
    assert b'"code": "UNSUPPORTED"' in answer and b"connection: close" in answer.lower()


def test_too_many_headers_is_431(limited):
    headers = b"".join(b"X-H%d: v\r\n" % i for i in range(10_000))
    sock = connect(limited.port)
    _send_all_or_reset(sock, b"GET /v2/ HTTP/1.1\r\nHost: x\r\n" + headers + b"\r\n")
    assert read_until_closed(sock).startswith(b"HTTP/1.1 431 ")


def test_headers_within_the_limits_are_served(limited):
    headers = {f"X-H{i}": "v" * 200 for i in range(90)}
    headers["Authorization"] = "Bearer " + "t" * 16_000  # large JWTs and cookies pass
    r = httpx.get(f"{limited.url}/v2/", headers=headers)
    assert r.status_code == 200, r.text


def test_unfinished_huge_headers_do_not_grow_the_server(limited):
    """Ten connections each streaming an endless header: each is refused once past the
    limit, and the server's memory stays flat."""
    before = rss_kib(limited.pid)
    socks = [connect(limited.port) for _ in range(10)]
    refused = 0
    chunk = b"a" * 65536
    for sock in socks:
        sock.sendall(b"GET /v2/ HTTP/1.1\r\nHost: x\r\nX-Endless: ")
        try:
            for _ in range(20 * 16):  # 20 MiB, never finished
                sock.sendall(chunk)
        except (BrokenPipeError, ConnectionResetError):
            refused += 1
            continue
    peak = rss_kib(limited.pid)
    for sock in socks:
        sock.close()
    assert refused == 10, "a connection could send 20 MiB of one unfinished header"
    assert peak - before < 20 * 1024, f"server grew by {(peak - before) // 1024} MiB"


def test_headers_must_arrive_in_time(limited):
    silent = connect(limited.port)
    trickle = connect(limited.port)
    trickle.sendall(b"GET /v2/ HTTP/1.1\r\nHost: x\r\n")
    start = time.monotonic()
    # Normal clients are served meanwhile.
    with httpx.Client(base_url=limited.url) as client:
        for _ in range(5):
            assert client.get("/v2/").status_code == 200
    answer = read_until_closed(trickle)
    assert answer.startswith(b"HTTP/1.1 408 "), answer[:200]
    assert read_until_closed(silent) == b""  # closed without a word
    elapsed = time.monotonic() - start
    assert 0.8 < elapsed < 5, elapsed


def test_a_keep_alive_connection_gets_a_fresh_header_timeout_per_request(limited):
    """The timeout counts from a request's first byte, not from the connection's start."""
    sock = connect(limited.port)
    for _ in range(3):
        sock.sendall(b"GET /v2/ HTTP/1.1\r\nHost: x\r\n\r\n")
        assert read_response(sock).startswith(b"HTTP/1.1 200")
        time.sleep(0.7)  # idle between requests: the keep-alive timeout applies, not this one
    sock.sendall(b"GET /v2/ HTTP/1.1\r\n")
    time.sleep(0.5)
    sock.sendall(b"Host: x\r\n\r\n")
    assert read_response(sock).startswith(b"HTTP/1.1 200")
