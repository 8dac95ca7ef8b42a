"""Pull events, when notifications.pull_events is on or an endpoint asks for pulls: a manifest
GET is recorded at most once per repository, digest and pull_event_interval in each process,
with how many pulls it stands for.
A pull storm thus writes a handful of rows, not one per pull; the write happens off the request
path (a pull never waits for it, nor fails because of it)."""

from __future__ import annotations

import asyncio
import logging
import time

from registry.model import events
from registry.model.context import Registry

log = logging.getLogger("okura.notifications")

MAX_KEYS = 10_000  # repositories x digests remembered; the oldest are forgotten first

_last: dict[tuple[str, str], float] = {}  # (repository, digest) -> when last recorded
_pending: dict[tuple[str, str], int] = {}  # pulls since then
_tasks: set[asyncio.Task[None]] = set()
_endpoint_wants = [False]  # an endpoint in effect asks for pulls (set by the delivery supervisor)


def set_wanted(wanted: bool) -> None:
    """An endpoint with `pulls: true` turns pull events on, as notifications.pull_events does."""
    _endpoint_wants[0] = wanted


def pulled(reg: Registry, repository: str, digest: str, media_type: str, size: int, tag: str | None) -> None:
    """Count a pull; record an event when its key's interval has passed."""
    if not (reg.config.notifications.pull_events or _endpoint_wants[0]):
        return
    key = (repository, digest)
    now = time.monotonic()
    _pending[key] = _pending.get(key, 0) + 1
    if now - _last.get(key, float("-inf")) < reg.config.notifications.pull_event_interval:
        return
    count = _pending.pop(key)
    _last.pop(key, None)
    _last[key] = now  # newest last: the dict's order is the eviction order
    while len(_last) > MAX_KEYS:
        _pending.pop(next(iter(_last)), None)
        del _last[next(iter(_last))]
    event = events.Event(events.PULL, repository, media_type, digest, size, tag, pulls=count)
    task = asyncio.create_task(_record(reg, event))
    _tasks.add(task)
    task.add_done_callback(_tasks.discard)


async def _record(reg: Registry, event: events.Event) -> None:
    try:
        await reg.db.write(lambda conn: events.append(reg.db, conn, [event]))
    except Exception as e:  # a lost pull event must not hurt anyone
        log.warning("pull event not recorded", extra={"repository": event.repository, "error": str(e)})
