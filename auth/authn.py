"""Authentication backends: who does a secret belong to? The built-in one reads the
metadata database; a backend asking a Kubernetes TokenReview can replace it."""

from __future__ import annotations

import time
from typing import Protocol

from auth.policy import AUTH_SLOT
from auth.store import AuthStore
from registry.cache import Generation

TOKEN_CACHE_SECONDS = 10.0  # bound on how long a revocation on another host may take to apply


class Authenticator(Protocol):
    async def subject_for_token(self, secret: str) -> str | None:
        """The user or service account a long-lived token belongs to, if it is valid now."""

    async def subject_for_password(self, user: str, password: str) -> str | None:
        """The user, if the password is theirs."""


class DatabaseAuthenticator:
    def __init__(self, store: AuthStore, generation: Generation):
        self.store = store
        self.generation = generation
        # secret -> (generation stamp, cached at, subject or None, valid until)
        self._tokens: dict[str, tuple[tuple[int, int], float, str | None]] = {}

    async def subject_for_token(self, secret: str) -> str | None:
        # Cached briefly so that a busy client costs no database round trip per request;
        # revocations bump AUTH_SLOT, which retires the cache on this host at once.
        stamp = self.generation.stamp(AUTH_SLOT)
        now = time.monotonic()
        cached = self._tokens.get(secret)
        if cached is not None and cached[0] == stamp and now < cached[1]:
            return cached[2]
        found = await self.store.token_subject(secret)
        subject = found[0] if found else None
        until = now + TOKEN_CACHE_SECONDS
        if found is not None and found[1] is not None:  # never past the token's own expiry
            until = min(until, now + max(found[1].timestamp() - time.time(), 0))
        if len(self._tokens) > 10_000:
            self._tokens.clear()
        self._tokens[secret] = (stamp, until, subject)
        return subject

    async def subject_for_password(self, user: str, password: str) -> str | None:
        return user if await self.store.check_password(user, password) else None
