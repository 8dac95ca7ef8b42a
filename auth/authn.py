"""Authentication backends: who does a secret belong to? The built-in one reads the
metadata database; a backend asking a Kubernetes TokenReview can replace it."""

from __future__ import annotations

import time
from typing import Protocol

from auth.store import AUTH_SLOT, AuthStore, ValidToken
from registry.cache import Generation

TOKEN_CACHE_SECONDS = 10.0  # bound on how long a revocation on another host may take to apply


class Authenticator(Protocol):
    async def token(self, secret: str) -> ValidToken | None:
        """The long-lived token with this secret (its id and the user or service account it
        belongs to), if it is valid now."""

    async def subject_for_password(self, user: str, password: str) -> str | None:
        """The user, if the password is theirs."""


class DatabaseAuthenticator:
    def __init__(self, store: AuthStore, generation: Generation):
        self.store = store
        self.generation = generation
        # secret -> (generation stamp, valid until, token or None)
        self._tokens: dict[str, tuple[tuple[int, int], float, ValidToken | None]] = {}

    async def token(self, secret: str) -> ValidToken | None:
        # Cached briefly so that a busy client costs no database round trip per request;
        # revocations bump AUTH_SLOT, which retires the cache on this host at once.
        stamp = self.generation.stamp(AUTH_SLOT)
        now = time.monotonic()
        cached = self._tokens.get(secret)
        if cached is not None and cached[0] == stamp and now < cached[1]:
            return cached[2]
        found = await self.store.valid_token(secret)
        until = now + TOKEN_CACHE_SECONDS
        if found is not None and found.expires_at is not None:  # never past the token's own expiry
            until = min(until, now + max(found.expires_at.timestamp() - time.time(), 0))
        if len(self._tokens) > 10_000:
            self._tokens.clear()
        self._tokens[secret] = (stamp, until, found)
        return found

    async def subject_for_password(self, user: str, password: str) -> str | None:
        return user if await self.store.check_password(user, password) else None
