"""Authorization: is (verb, resource) allowed for a caller in a namespace? The role
bindings are held in memory and reloaded when any process changes them, so checks
cost no database round trip."""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from collections.abc import Iterable
from typing import Protocol

from auth.access import Check
from auth.roles import ROLES
from auth.store import AUTH_SLOT, AuthStore, Binding
from auth.subjects import UNAUTHENTICATED, Identity
from registry.cache import Generation

MAX_AGE = 10.0  # seconds a snapshot of role bindings may be used without reloading


class Authorizer(Protocol):
    """The SubjectAccessReview question. A backend asking a Kubernetes API can replace the
    built-in one without touching handlers."""

    async def allowed(self, identity: Identity, check: Check) -> bool: ...

    async def who_can(self, check: Check) -> list[str]: ...


class BindingAuthorizer:
    def __init__(self, store: AuthStore, generation: Generation):
        self.store = store
        self.generation = generation
        self._stamp: tuple[int, int] | None = None
        self._loaded = 0.0
        self._cluster: dict[str, list[str]] = {}
        self._namespaced: dict[tuple[str, str], list[str]] = {}
        self._lock = asyncio.Lock()

    def changed(self) -> None:
        """Call after changing bindings or revoking tokens: every process on this host reloads
        before its next check (on PostgreSQL the change also notified every replica)."""
        self.generation.bump(AUTH_SLOT)

    async def _refresh(self) -> None:
        # Changes made through this host bump the shared generation; a bounded age covers
        # replicas on other hosts sharing the database.
        now = time.monotonic()
        if self.generation.stamp(AUTH_SLOT) == self._stamp and now - self._loaded < MAX_AGE:
            return
        async with self._lock:
            stamp = self.generation.stamp(AUTH_SLOT)
            if stamp == self._stamp and time.monotonic() - self._loaded < MAX_AGE:
                return
            bindings = await self.store.bindings()
            cluster: dict[str, list[str]] = defaultdict(list)
            namespaced: dict[tuple[str, str], list[str]] = defaultdict(list)
            for b in bindings:
                if b.namespace is None:
                    cluster[b.subject].append(b.role)
                else:
                    namespaced[(b.subject, b.namespace)].append(b.role)
            self._cluster, self._namespaced, self._stamp = dict(cluster), dict(namespaced), stamp
            self._loaded = time.monotonic()

    def _roles(self, subjects: Iterable[str], namespace: str | None) -> Iterable[str]:
        for subject in subjects:
            yield from self._cluster.get(subject, ())
            if namespace is not None:
                yield from self._namespaced.get((subject, namespace), ())

    async def allowed(self, identity: Identity, check: Check) -> bool:
        await self._refresh()
        # What anonymous callers may do, logged-in ones may too: logging in never takes
        # access away (a "public" namespace stays pullable after `podman login`).
        subjects = identity.subjects if identity.anonymous else (*identity.subjects, UNAUTHENTICATED)
        return any(
            ROLES[role].allows(check.verb, check.resource)
            for role in self._roles(subjects, check.namespace)
            if role in ROLES
        )

    async def who_can(self, check: Check) -> list[str]:
        await self._refresh()
        found = {
            s
            for s, roles in self._cluster.items()
            if any(ROLES[r].allows(check.verb, check.resource) for r in roles if r in ROLES)
        }
        if check.namespace is not None:
            found |= {
                s
                for (s, ns), roles in self._namespaced.items()
                if ns == check.namespace
                and any(ROLES[r].allows(check.verb, check.resource) for r in roles if r in ROLES)
            }
        return sorted(found)

    async def bindings(self) -> list[Binding]:
        return await self.store.bindings()
