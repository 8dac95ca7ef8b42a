"""Purge abandoned upload sessions periodically, and reclaim the data of upload writers
that died, each on one process at a time."""

from __future__ import annotations

import asyncio
import logging

from registry import metrics
from registry.errors import Unavailable
from registry.metadata import leases
from registry.model.context import Registry
from registry.model.uploads import purge_stale_uploads, reclaim_abandoned_uploads

log = logging.getLogger("okura.tasks")
LEASE = "upload-purge"
RECLAIM_INTERVAL = 60.0


async def run_forever(reg: Registry) -> None:
    interval = reg.config.uploads.purge_interval
    while True:
        try:
            if await leases.acquire(reg.db, LEASE, ttl=interval * 1.5):
                purged = await purge_stale_uploads(reg, reg.config.uploads.purge_age)
                metrics.uploads_purged.inc(purged)
        except asyncio.CancelledError:
            raise
        except Unavailable as e:
            log.warning("upload purge skipped: %s", e.message)
        except Exception:
            log.exception("upload purge failed")
        await asyncio.sleep(interval)


async def reclaim_forever(reg: Registry, interval: float = RECLAIM_INTERVAL) -> None:
    """At start (a restart after a crash finds what the dead writers left) and every minute.
    No lease: it is cheap, safe to run in every worker at once (it takes each upload's
    lock), and must not wait for the lease of the process that just died."""
    while True:
        try:
            await reclaim_abandoned_uploads(reg)
        except asyncio.CancelledError:
            raise
        except Unavailable as e:
            log.warning("upload reclaim skipped: %s", e.message)
        except Exception:
            log.exception("upload reclaim failed")
        await asyncio.sleep(interval)
