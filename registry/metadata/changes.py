"""Cross-replica cache invalidation over PostgreSQL LISTEN/NOTIFY.

Replicas sharing one PostgreSQL database cannot see each other's memory-mapped
generation counters. A change (a tag moved, a manifest or blob link deleted) is
published on a channel after its commit; every replica, the publisher included,
bumps the matching local counter when the notification arrives, which retires its
cached entries. While the listening connection is down, caching is bypassed, and
on reconnect every cache is retired (notifications may have been missed).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any

from registry.cache import Generation

log = logging.getLogger("okura.changes")
CHANNEL = "okura_changes"
ALL = "*"  # payload that retires every cache


class ChangeFeed:
    def __init__(self, url: str, generation: Generation):
        self.url = "postgresql://" + url.split("://", 1)[1]
        self.generation = generation
        self.connected = False
        self._conn: Any = None
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        self._lost = asyncio.Event()
        # Told each key that arrives (None: everything), after its counter was bumped: lets
        # waiters on this event loop wake at once instead of at their next look at the counter.
        self.on_notify: Callable[[str | None], None] | None = None

    async def start(self) -> None:
        await self._connect()
        self._task = asyncio.create_task(self._keep_connected())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._conn is not None:
            with contextlib.suppress(Exception):
                await self._conn.close()

    async def _connect(self) -> None:
        import asyncpg

        conn = await asyncpg.connect(self.url, timeout=10)
        conn.add_termination_listener(lambda _c: self._on_lost())
        await conn.add_listener(CHANNEL, self._on_notify)
        self._conn = conn
        self._lost.clear()
        # Whatever was cached may have changed while nobody was listening.
        self._bump(None)
        self.connected = True

    def _on_lost(self) -> None:
        self.connected = False
        self._lost.set()

    def _on_notify(self, _conn: Any, _pid: int, _channel: str, payload: str) -> None:
        self._bump(None if payload == ALL else payload)

    def _bump(self, key: str | None) -> None:
        self.generation.bump(key)
        if self.on_notify is not None:
            self.on_notify(key)

    async def _keep_connected(self) -> None:
        delay = 0.5
        while True:
            await self._lost.wait()
            log.warning("change feed lost its database connection; caching is bypassed until it is back")
            while True:
                try:
                    await self._connect()
                    log.info("change feed reconnected")
                    delay = 0.5
                    break
                except Exception as e:  # keep trying: the database may be restarting
                    log.warning("change feed reconnect failed: %s", str(e)[:200])
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, 10.0)

    async def publish(self, key: str | None) -> None:
        """Tell every replica that cached data of `key` (a repository; None: everything) changed."""
        if self._conn is None or not self.connected:
            return  # every replica's caches are bypassed or reset on reconnect anyway
        async with self._lock:
            try:
                await self._conn.execute("SELECT pg_notify($1, $2)", CHANNEL, ALL if key is None else key)
            except Exception as e:
                log.warning("could not publish a cache invalidation: %s", str(e)[:200])
                self._on_lost()
