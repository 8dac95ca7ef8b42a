"""Brute-force protection: failed logins per client, slowed and then refused."""

from __future__ import annotations

import time
from collections import deque


class FailureLimiter:
    """Per client: after `slow_after` failures within `window` seconds each further failure
    is answered after a growing delay; after `max_failures` the client is refused for
    `lockout` seconds. State is per process (each worker counts on its own)."""

    def __init__(self, slow_after: int, max_failures: int, window: float, lockout: float, max_clients: int = 10_000):
        self.slow_after = slow_after
        self.max_failures = max_failures
        self.window = window
        self.lockout = lockout
        self.max_clients = max_clients
        self._failures: dict[str, deque[float]] = {}
        self._locked: dict[str, float] = {}

    def check(self, client: str) -> float | None:
        """None while the client is locked out; else 0."""
        until = self._locked.get(client)
        if until is not None:
            if time.monotonic() < until:
                return None
            del self._locked[client]
        return 0.0

    def failed(self, client: str) -> float:
        """Record a failure; returns how long to delay the answer."""
        now = time.monotonic()
        if len(self._failures) >= self.max_clients and client not in self._failures:
            self._prune(now)
        recent = self._failures.setdefault(client, deque())
        recent.append(now)
        while recent and recent[0] < now - self.window:
            recent.popleft()
        if len(recent) >= self.max_failures:
            self._locked[client] = now + self.lockout
            recent.clear()
            return 0.0
        excess = len(recent) - self.slow_after
        return min(0.25 * 2**excess, 4.0) if excess >= 0 else 0.0

    def _prune(self, now: float) -> None:
        for client in [c for c, q in self._failures.items() if not q or q[-1] < now - self.window]:
            del self._failures[client]
        if len(self._failures) >= self.max_clients:
            self._failures.clear()
