"""Purge abandoned upload sessions periodically, on one process at a time."""

from __future__ import annotations

import asyncio
import logging

from registry import metrics
from registry.errors import Unavailable
from registry.model.context import Registry
from registry.model.uploads import purge_stale_uploads
from registry.tasks import leases

log = logging.getLogger("okura.tasks")
LEASE = "upload-purge"


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
