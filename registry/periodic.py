"""Task helpers. The loop every background job runs: do the work, wait, again; a database
outage skips a round with a warning, an unexpected error is logged with its traceback, and
neither stops the loop. Stopping a task, and waiting for a result within a bound, without
losing a cancellation or cutting a back end's cleanup. A leaf module."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from registry.errors import Unavailable

log = logging.getLogger("okura.tasks")
T = TypeVar("T")


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


async def result_within(awaitable: Awaitable[T], timeout: float) -> T:
    """The result of `awaitable` if it comes within `timeout` seconds, else TimeoutError. Unlike
    asyncio.timeout, what is awaited is not cancelled but left to finish in the background (its
    outcome dropped): for checks of a back end whose calls have deadlines of their own, where a
    cancellation would cut a database driver's cleanup of a connection midway."""
    task = asyncio.ensure_future(awaitable)
    try:
        done, _ = await asyncio.wait({task}, timeout=timeout)
    finally:
        task.add_done_callback(_drop_outcome)
    if not done:
        raise TimeoutError
    return task.result()


def _drop_outcome(task: asyncio.Future[Any]) -> None:
    if not task.cancelled():
        task.exception()  # retrieved: asyncio logs an exception nobody asked for
