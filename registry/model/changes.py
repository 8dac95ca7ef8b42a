"""The change log: every change of an API object, appended in the transaction that makes it,
in commit order. A change's id is the resourceVersion clients see; watches follow the log
from a resourceVersion on every replica; it is trimmed by age, and a watch from below what
was trimmed is answered 410 Gone.

Commit order: on PostgreSQL, ids come from a sequence at insert time, so a transaction that
took a smaller id could commit after a larger one became visible, and a watcher reading
"after id N" would skip it. Appends therefore take a transaction lock and are the last
statements before the commit: ids become visible in increasing order. (SQLite has a single
writer.) A notification sent inside the transaction wakes the other replicas' watchers at
the commit."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, delete, func, select, text, update

from registry.metadata.changes import CHANNEL
from registry.metadata.db import CHANGES_MARK, Database, as_utc, utcnow
from registry.metadata.schema import change_log, changes
from registry.periodic import stop_task

CHANGES_SLOT = "@changes"  # the generation slot bumped after a commit that appended changes
_PG_APPEND_LOCK = 7_146_531_003

ADDED, MODIFIED, DELETED = "ADDED", "MODIFIED", "DELETED"

# Built once: every write appends through these, and building a statement costs more than
# running it on SQLite.
_INSERT = changes.insert()
_TRIMMED = select(change_log.c.trimmed_through).where(change_log.c.id == 1)
_LATEST = select(func.max(changes.c.id), _TRIMMED.scalar_subquery())


@dataclass(frozen=True)
class Change:
    resource: str  # the plural: imagestreams, imagestreamtags, images, imagepruners, ...
    namespace: str | None
    name: str
    type: str  # ADDED, MODIFIED or DELETED
    object: dict[str, Any] | None = None  # a DELETED object's last state


@dataclass(frozen=True)
class LoggedChange:
    id: int
    at: datetime
    change: Change


def record(db: Database, conn: Connection, entries: Sequence[Change]) -> list[int]:
    """Append `entries` at the end of a write transaction (only the commit may follow);
    returns their ids, in order. Repeated entries of one object collapse into one."""
    unique: dict[tuple[str, str | None, str], Change] = {}
    for entry in entries:
        key = (entry.resource, entry.namespace, entry.name)
        earlier = unique.get(key)
        if earlier is not None and earlier.type == ADDED and entry.type == MODIFIED:
            continue  # still an addition, seen in its final state
        unique[key] = entry
    if not unique:
        return []
    if not db.is_sqlite:
        conn.execute(text(f"SELECT pg_advisory_xact_lock({_PG_APPEND_LOCK})"))
        conn.execute(text("SELECT pg_notify(:channel, :key)"), {"channel": CHANNEL, "key": CHANGES_SLOT})
    now = utcnow()
    # Ids are numbered here, after the newest id and the trimmed mark, never by the table's
    # autoincrement: SQLite would reuse ids once a trim emptied the table, and resourceVersions
    # must only ever grow. Appends are serialized (PostgreSQL: the lock above; SQLite: one
    # writer at a time), so the next id is free.
    first = latest(conn) + 1
    ids = list(range(first, first + len(unique)))
    conn.execute(
        _INSERT,
        [
            {
                "id": change_id,
                "at": now,
                "resource": c.resource,
                "namespace": c.namespace,
                "name": c.name,
                "type": c.type,
                "object": c.object,
            }
            for change_id, c in zip(ids, unique.values(), strict=True)
        ],
    )
    conn.info[CHANGES_MARK] = True
    by_key = dict(zip(unique, ids, strict=True))
    return [by_key[(e.resource, e.namespace, e.name)] for e in entries]


def latest(conn: Connection) -> int:
    """The current resourceVersion of everything: the newest change's id."""
    newest, trimmed = conn.execute(_LATEST).one()
    return max(newest or 0, trimmed or 0)


def trimmed_through(conn: Connection) -> int:
    return conn.execute(_TRIMMED).scalar() or 0


def since(conn: Connection, after: int, resources: Sequence[str], limit: int = 500) -> tuple[list[LoggedChange], int]:
    """Changes of `resources` after `after`, oldest first, and the id the scan reached (the
    caller's next `after`, past changes of other resources too)."""
    rows = conn.execute(select(changes).where(changes.c.id > after).order_by(changes.c.id).limit(limit)).all()
    reached = rows[-1].id if rows else after
    found = [
        LoggedChange(r.id, as_utc(r.at), Change(r.resource, r.namespace, r.name, r.type, r.object))
        for r in rows
        if r.resource in resources
    ]
    return found, reached


def deleted_after(conn: Connection, resource: str, namespace: str | None, name: str, after: int) -> dict | None:
    """The last state of an object that was deleted after change `after` (its DELETED
    change's object): what a watch replaying older changes of it shows."""
    row = conn.execute(
        select(changes.c.object)
        .where(
            changes.c.id > after,
            changes.c.resource == resource,
            changes.c.namespace == namespace if namespace is not None else changes.c.namespace.is_(None),
            changes.c.name == name,
            changes.c.type == DELETED,
        )
        .order_by(changes.c.id)
        .limit(1)
    ).first()
    return row.object if row is not None else None


def expired(conn: Connection, resource_version: int) -> bool:
    """Whether changes after `resource_version` may have been trimmed away."""
    return resource_version < trimmed_through(conn)


async def trim(db: Database, older_than: datetime) -> int:
    """Delete changes older than `older_than`; returns how many."""

    def run(conn: Connection) -> int:
        newest_gone = conn.execute(select(func.max(changes.c.id)).where(changes.c.at < older_than)).scalar()
        if newest_gone is None:
            return 0
        gone = conn.execute(delete(changes).where(changes.c.id <= newest_gone)).rowcount
        conn.execute(
            update(change_log)
            .where(change_log.c.id == 1, change_log.c.trimmed_through < newest_gone)
            .values(trimmed_through=newest_gone)
        )
        return gone

    return await db.write(run)


class ChangeWaiter:
    """Wakes watchers of this process when the change log grows: at once for this process's
    commits and for other replicas' (their PostgreSQL notifications arrive through
    `notified`), within `poll` seconds for other workers of this host (a shared counter).

    A watcher takes `sequence` before it reads the log and then waits for it to move, so a
    change committed between its read and its wait is never missed."""

    def __init__(self, generation: Any, poll: float = 0.05):
        self.generation = generation
        self.poll = poll
        self.sequence = 0
        self._seen = generation.stamp(CHANGES_SLOT)
        self._moved: asyncio.Event | None = None
        self._watchers = 0
        self._task: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def committed(self) -> None:
        """After a commit that appended changes (called from any thread)."""
        self.generation.bump(CHANGES_SLOT)
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._advance)

    def notified(self, key: str | None) -> None:
        """A change-feed notification (on this event loop): the log grew on another replica."""
        if key is None or key == CHANGES_SLOT:
            self._seen = self.generation.stamp(CHANGES_SLOT)  # the counter's bump is this wake
            self._advance()

    def _advance(self) -> None:
        self.sequence += 1
        if self._moved is not None:
            self._moved.set()
            self._moved = asyncio.Event()

    async def wait(self, since: int, timeout: float) -> None:
        """Until `sequence` differs from `since`, or `timeout` seconds."""
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
        if self.sequence != since:
            return
        if self._moved is None:
            self._moved = asyncio.Event()
        moved = self._moved
        self._watchers += 1
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._watch_counter())
        try:
            # Not asyncio.wait_for: on Python 3.11 it swallows a cancellation that arrives as
            # the wait ends, and a job stopped at shutdown then waited again, for ever.
            async with asyncio.timeout(timeout):
                await moved.wait()
        except TimeoutError:
            pass
        finally:
            self._watchers -= 1

    async def _watch_counter(self) -> None:
        while self._watchers > 0:
            stamp = self.generation.stamp(CHANGES_SLOT)
            if stamp != self._seen:
                self._seen = stamp
                self._advance()
            await asyncio.sleep(self.poll)

    async def close(self) -> None:
        if self._task is not None:
            await stop_task(self._task)
