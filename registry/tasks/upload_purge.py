"""Purge abandoned upload sessions periodically, and reclaim the data of upload writers
that died, each on one process at a time."""

from __future__ import annotations

import logging

from registry import metrics
from registry.metadata import leases
from registry.model.context import Registry
from registry.model.uploads import purge_stale_uploads, reclaim_abandoned_uploads
from registry.periodic import every

log = logging.getLogger("okura.tasks")
LEASE = "upload-purge"
RECLAIM_INTERVAL = 60.0


async def run_forever(reg: Registry) -> None:
    interval = reg.config.uploads.purge_interval

    async def purge() -> None:
        if await leases.acquire(reg.db, LEASE, ttl=interval * 1.5):
            metrics.uploads_purged.inc(await purge_stale_uploads(reg, reg.config.uploads.purge_age))

    await every(interval, "upload purge", purge)


async def reclaim_forever(reg: Registry, interval: float = RECLAIM_INTERVAL) -> None:
    """At start (a restart after a crash finds what the dead writers left) and every minute.
    No lease: it is cheap, safe to run in every worker at once (it takes each upload's
    lock), and must not wait for the lease of the process that just died."""
    await every(interval, "upload reclaim", lambda: reclaim_abandoned_uploads(reg))
