"""Recently revoked long-lived tokens, held in memory so that every request presenting a bearer
JWT can be checked against them for free: a JWT names the token it was minted from (`tid`)
and dies with it. Only revocations younger than a JWT's lifetime (plus leeway) matter; older
tokens' JWTs have all expired."""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta

from auth.store import AUTH_SLOT, AuthStore
from registry.cache import Generation
from registry.metadata.db import utcnow

# Revocations on this host bump AUTH_SLOT (and on PostgreSQL every replica's, through the change
# feed); this bounds how long one nobody announced (another replica on SQLite) takes to apply.
RELOAD_SECONDS = 3.0


class RevokedTokens:
    def __init__(self, store: AuthStore, generation: Generation, horizon: float):
        self.store = store
        self.generation = generation
        self.horizon = horizon  # seconds a revocation is remembered
        self._ids: set[str] = set()
        self._stamp: tuple[int, int] | None = None
        self._loaded = float("-inf")
        self._lock = asyncio.Lock()

    def _fresh(self) -> bool:
        return self.generation.stamp(AUTH_SLOT) == self._stamp and time.monotonic() - self._loaded < RELOAD_SECONDS

    async def contains(self, token_id: str) -> bool:
        if not self._fresh():
            async with self._lock:
                if not self._fresh():
                    stamp = self.generation.stamp(AUTH_SLOT)  # before reading: a later bump reloads again
                    self._ids = await self.store.revoked_since(utcnow() - timedelta(seconds=self.horizon))
                    self._stamp, self._loaded = stamp, time.monotonic()
        return token_id in self._ids
