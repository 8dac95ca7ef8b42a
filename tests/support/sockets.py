"""Raw HTTP/1.1 over sockets, for tests of what the server does with clients that misbehave."""

from __future__ import annotations

import socket


def connect(port: int, timeout: float = 10) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port))
    sock.settimeout(timeout)
    return sock


def read_until_closed(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection (a reset counts as closed);
    fails when the socket's timeout passes with neither."""
    data = b""
    while True:
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            return data
        except TimeoutError:
            raise AssertionError(f"no answer and no close within {sock.gettimeout()}s: {data[:60]!r}") from None
        if not chunk:
            return data
        data += chunk


def header(head: bytes, name: bytes) -> bytes | None:
    """A header's value in a response head (`name` lower-case)."""
    for line in head.split(b"\r\n")[1:]:
        key, _, value = line.partition(b":")
        if key.strip().lower() == name:
            return value.strip()
    return None


def read_response(sock: socket.socket) -> bytes:
    """One response with a Content-Length body, on a connection that stays open."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError(f"closed after {data[:200]!r}")
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = int(header(head, b"content-length") or 0)
    while len(body) < length:
        body += sock.recv(65536)
    return head + b"\r\n\r\n" + body
