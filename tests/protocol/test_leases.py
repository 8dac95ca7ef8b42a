"""Background jobs run on one process at a time: database leases."""

from __future__ import annotations

import asyncio

from registry.metadata import leases


async def test_one_holder_at_a_time_and_takeover_after_expiry(registry_model):
    db = registry_model.db
    assert await leases.acquire(db, "job", ttl=0.5, holder="replica-a")
    assert not await leases.acquire(db, "job", ttl=0.5, holder="replica-b")
    assert await leases.acquire(db, "job", ttl=0.5, holder="replica-a")  # renewal
    await asyncio.sleep(0.7)  # replica-a died: its lease runs out
    assert await leases.acquire(db, "job", ttl=5, holder="replica-b")
    assert not await leases.acquire(db, "job", ttl=5, holder="replica-a")
    await leases.release(db, "job", holder="replica-b")
    assert await leases.acquire(db, "job", ttl=5, holder="replica-a")


async def test_concurrent_contenders_get_exactly_one_lease(registry_model):
    db = registry_model.db
    results = await asyncio.gather(*(leases.acquire(db, "race", ttl=30, holder=f"r{i}") for i in range(8)))
    assert sum(results) == 1
