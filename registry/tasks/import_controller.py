"""The import controller (OpenShift's ImageStreamController and ScheduledImageStreamController
in one loop, on one replica at a time under a lease).

- A spec tag `from: DockerImage` (not `reference`) whose generation is above what its status
  answers (its current item's generation, or its failed import's) is imported: a stream
  created with such tags, or a tag set to generation 0, gets imported within moments.
- Tags with `importPolicy.scheduled` are imported again once their stream's last import is
  `imports.scheduled_interval` old, at most `imports.max_per_minute` tags a minute. An
  unchanged upstream writes nothing; a new digest adds a history item.

Imports go through registry.model.imports like every other, with `reset=False`: the tag's
generation stays, so a failing tag is not retried in a loop (its condition answers it).
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, func, select

from registry.errors import RegistryError, Unavailable
from registry.metadata import leases
from registry.metadata.db import as_utc, utcnow
from registry.metadata.schema import repositories, tag_events
from registry.model import events, imports
from registry.model.context import Registry
from registry.model.imports import ImportRequest, ImportSource
from registry.model.streams import TagCondition, TagReference, split_repository

log = logging.getLogger("okura.imports")

LEASE = "image-import"
LEASE_TTL = 30.0
IDLE_WAIT = 5.0  # seconds between scans when nothing wakes the controller


@dataclass(frozen=True)
class Due:
    namespace: str
    name: str
    tags: tuple[TagReference, ...]
    scheduled: bool  # a scheduled round (rate limited), not a generation rise


def importable(tag: TagReference) -> bool:
    return tag.from_kind == "DockerImage" and not tag.reference and bool(tag.from_name)


def _observed(conn: Connection, repo_id: int, conditions: dict[str, Any]) -> dict[str, int]:
    """Each tag's observed generation: its newest history item's, or its condition's."""
    newest = (
        select(tag_events.c.tag, func.max(tag_events.c.id).label("id"))
        .where(tag_events.c.repository_id == repo_id)
        .group_by(tag_events.c.tag)
        .subquery()
    )
    rows = conn.execute(
        select(tag_events.c.tag, tag_events.c.generation).join(newest, newest.c.id == tag_events.c.id)
    ).all()
    observed = {r.tag: int(r.generation) for r in rows}
    for tag, condition in conditions.items():
        if isinstance(condition, dict):
            generation = TagCondition.from_json(condition).generation
            observed[tag] = max(observed.get(tag, 0), generation)
    return observed


def find_due(conn: Connection, now: datetime, interval: float) -> list[Due]:
    """Streams with tags to import: generation rises first, then scheduled rounds."""
    rows = conn.execute(
        select(
            repositories.c.id,
            repositories.c.name,
            repositories.c.spec,
            repositories.c.tag_conditions,
            repositories.c.imported_at,
        ).where(repositories.c.deleted_at.is_(None), repositories.c.spec.is_not(None))
    ).all()
    rises: list[Due] = []
    scheduled: list[Due] = []
    for row in rows:
        tags = [TagReference.from_json(t) for t in (row.spec or {}).get("tags", [])]
        tags = [t for t in tags if importable(t)]
        parts = split_repository(row.name)
        if not tags or parts is None:
            continue
        observed = _observed(conn, row.id, dict(row.tag_conditions or {}))
        rising = tuple(t for t in tags if (t.generation or 0) > observed.get(t.name, 0) or t.name not in observed)
        if rising:
            rises.append(Due(parts[0], parts[1], rising, False))
            continue
        last = as_utc(row.imported_at) if row.imported_at is not None else None
        if last is not None and now - last < timedelta(seconds=interval):
            continue
        # A tag pinned to a digest cannot change: scheduled only until it imported once.
        again = tuple(t for t in tags if t.scheduled and not ("@" in (t.from_name or "") and t.name in observed))
        if again:
            scheduled.append(Due(parts[0], parts[1], again, True))
    return rises + scheduled


class TokenBucket:
    """At most `per_minute` imports a minute, in bursts of at most twice that (OpenShift's);
    0 means no limit."""

    def __init__(self, per_minute: int) -> None:
        self.rate = per_minute / 60.0
        self.capacity = max(2.0 * per_minute, 1.0)
        self.tokens = self.capacity
        self.stamp = time.monotonic()

    def take(self, n: int = 1) -> bool:
        if self.rate <= 0:
            return True
        now = time.monotonic()
        self.tokens = min(self.capacity, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens < n:
            return False
        self.tokens -= n
        return True


ACTOR = "system:image-import-controller"


async def import_due(reg: Registry, due: Due) -> None:
    request = ImportRequest(
        due.namespace,
        due.name,
        tuple(
            ImportSource(t.from_name or "", t.name, t.insecure, t.scheduled, t.import_mode, t.reference_policy)
            for t in due.tags
        ),
        reset=False,
        actor=ACTOR,
    )
    events.acting_as.set(ACTOR)  # this task's own context: the events of its imports name it
    await imports.import_images(reg, request)


async def run_once(reg: Registry, bucket: TokenBucket) -> int:
    """One scan: import what is due (scheduled rounds while the bucket allows). Returns the
    number of streams imported."""
    settings = reg.settings.current
    if settings.read_only or settings.removed:  # imports write tags: they wait for writes to return
        return 0
    interval = reg.config.imports.scheduled_interval
    due = await reg.db.read(find_due, utcnow(), interval)
    done = 0
    for item in due:
        if item.scheduled and not bucket.take(len(item.tags)):
            log.info("scheduled imports over imports.max_per_minute; the rest wait for the next round")
            break
        try:
            await import_due(reg, item)
            done += 1
        except RegistryError as e:  # the stream changed or went meanwhile: the next scan sees it
            log.warning("import skipped", extra={"stream": f"{item.namespace}/{item.name}", "error": e.message})
    return done


async def run_forever(reg: Registry) -> None:
    bucket = TokenBucket(reg.config.imports.max_per_minute)
    wait = min(IDLE_WAIT, max(reg.config.imports.scheduled_interval / 4, 0.5))
    while True:
        seen = reg.waiter.sequence if reg.waiter is not None else 0
        try:
            if await leases.acquire(reg.db, LEASE, ttl=LEASE_TTL):
                await run_once(reg, bucket)
        except asyncio.CancelledError:
            raise
        except Unavailable as e:
            log.warning("import controller skipped a round: %s", e.message)
        except Exception:
            log.exception("import controller round failed")
        # Wake on any change (a stream written here or on another replica), else scan anyway.
        if reg.waiter is not None:
            await reg.waiter.wait(seen, wait)
        else:
            await asyncio.sleep(wait)
