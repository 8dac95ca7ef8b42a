"""The one port allocator of the test suites: every server a test starts (okura, SeaweedFS,
upstream registries, webhook receivers) listens on a loopback port from PORTS, apart from what
other programs here listen on (development and reference registries below 5100, PostgreSQL on
5432, RabbitMQ on 5672, Redis on 6379) and from the kernel's ephemeral range (outgoing
connections). A port is handed out once per session, so the range is wide: the whole suite
starts several hundred servers."""

from __future__ import annotations

import random
import socket
import threading

RESERVED = frozenset({5432, 5672, 6379})  # PostgreSQL, RabbitMQ, Redis on this machine
PORTS = [p for p in range(5100, 7000) if p not in RESERVED]

_handed_out: set[int] = set()
_lock = threading.Lock()


def allocate_port() -> int:
    """A port in PORTS nobody listens on (checked by binding it), never handed out before in this
    session (a port just released may still have connections in TIME_WAIT, and a server may not
    have let go of it yet). Random, so that concurrent test runs seldom try the same port."""
    with _lock:
        candidates = [p for p in PORTS if p not in _handed_out]
        random.shuffle(candidates)
        for port in candidates:
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
                try:
                    s.bind(("127.0.0.1", port))
                except OSError:
                    continue
            _handed_out.add(port)
            return port
    raise RuntimeError(f"no free port in {PORTS[0]}-{PORTS[-1]}")
