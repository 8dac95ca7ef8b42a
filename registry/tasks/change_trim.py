"""Trim the change log to `changes.retention`, on one process at a time."""

from __future__ import annotations

from datetime import timedelta

from registry.metadata import leases
from registry.metadata.db import utcnow
from registry.model import changes
from registry.model.context import Registry
from registry.periodic import every

LEASE = "change-log-trim"
MAX_INTERVAL = 600.0


def interval(retention: float) -> float:
    """Often enough that the log never holds much more than its retention."""
    return min(MAX_INTERVAL, max(retention / 10, 5.0))


async def trim_once(reg: Registry) -> int:
    """Changes older than the retention go; watchers from before them get 410 Expired."""
    return await changes.trim(reg.db, utcnow() - timedelta(seconds=reg.config.changes.retention))


async def run_forever(reg: Registry) -> None:
    seconds = interval(reg.config.changes.retention)

    async def work() -> None:
        if await leases.acquire(reg.db, LEASE, ttl=seconds * 1.5):
            await trim_once(reg)

    await every(seconds, "change log trim", work)
