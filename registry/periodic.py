"""The loop every background job runs: do the work, wait, again; a database outage skips a
round with a warning, an unexpected error is logged with its traceback, and neither stops
the loop. A leaf module."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

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


async def stop_task(task: asyncio.Task[Any]) -> None:
    """Cancel `task` and wait for it to end, whatever it raised. A cancellation of the caller
    while it waits still propagates (suppressing CancelledError around the await would eat it,
    and a supervisor stopped at shutdown would then carry on)."""
    task.cancel()
    try:
        await task
    except asyncio.CancelledError:
        current = asyncio.current_task()
        if current is not None and current.cancelling():
            raise
    except Exception:
        pass  # the task's own failure: it logs it, if it matters
