"""The loop every background job runs: do the work, wait, again; a database outage skips a
round with a warning, an unexpected error is logged with its traceback, and neither stops
the loop. A leaf module."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from registry.errors import Unavailable

log = logging.getLogger("okura.tasks")


async def every(seconds: float, job: str, work: Callable[[], Awaitable[object]]) -> None:
    """Run `work` now and then every `seconds`, until cancelled."""
    while True:
        try:
            await work()
        except asyncio.CancelledError:
            raise
        except Unavailable as e:
            log.warning("%s skipped: %s", job, e.message)
        except Exception:
            log.exception("%s failed", job)
        await asyncio.sleep(seconds)
