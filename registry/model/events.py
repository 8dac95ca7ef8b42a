"""The event log: what notifications deliver. One row per registry event (a manifest or blob
pushed, a tag moved or deleted, a manifest deleted, a blob mounted, an image imported, objects
pruned), appended in the transaction that makes the change, so an event exists if and only if
its change committed.

Ids follow commit order, as the change log's do (registry/model/changes.py): appends take the
same transaction lock on PostgreSQL and are the last statements before the commit, so a reader
of "events after id N" never skips one that commits late. Delivery (registry/notifications)
keeps a cursor per endpoint and reads forward from it in batches: O(batch), whatever the size of
the log.

Who asked and from where (distribution's `request` and `actor`) comes from the HTTP layer
through `current_request`, a context variable: the model knows nothing of HTTP.
"""

from __future__ import annotations

import socket
import uuid
from collections.abc import Callable, Sequence
from contextvars import ContextVar
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, delete, func, select, text

from registry.metadata.changes import CHANNEL
from registry.metadata.db import CHANGES_MARK, Database, as_utc, utcnow
from registry.metadata.schema import events
from registry.model.changes import CHANGES_SLOT

PUSH, PULL, MOUNT, DELETE = "push", "pull", "mount", "delete"
ACTIONS = (PUSH, PULL, MOUNT, DELETE)
_PG_APPEND_LOCK = 7_146_531_003  # the change log's: one order for both logs

# This process, as distribution's `source` names it.
INSTANCE_ID = str(uuid.uuid4())
SOURCE_HOST = socket.gethostname()


@dataclass(frozen=True)
class RequestInfo:
    """The HTTP request behind a change (distribution's `request`), set by the HTTP layer."""

    id: str
    addr: str
    host: str
    method: str
    useragent: str
    actor: str | None = None  # the authenticated name, when not anonymous


# Set per request to a function making its RequestInfo: called only when an event is written,
# so reads (most requests: blob and manifest GETs) never build one.
current_request: ContextVar[Callable[[], RequestInfo] | None] = ContextVar("okura_current_request", default=None)
# Who acts when no request does: a background job (the import controller, the pruner).
acting_as: ContextVar[str | None] = ContextVar("okura_acting_as", default=None)
_source = {"addr": SOURCE_HOST}


def set_source(addr: str) -> None:
    """This process's HOST:PORT, as events name their source (set once at start)."""
    _source["addr"] = addr


def source_addr() -> str:
    return _source["addr"]


@dataclass(frozen=True)
class Event:
    action: str  # push, pull, mount, delete
    repository: str
    media_type: str | None = None
    digest: str | None = None
    size: int | None = None
    tag: str | None = None
    actor: str | None = None  # overrides the request's (background jobs: the pruner, the importer)
    from_repository: str | None = None  # a mount's source
    references: tuple[str, ...] = ()  # a manifest's blobs and children
    upstream: str | None = None  # an imported image's source repository
    pulls: int = 0  # a pull event: how many pulls it stands for (they are sampled)


@dataclass(frozen=True)
class LoggedEvent:
    id: int
    at: datetime
    event: Event
    request: dict[str, Any] = field(default_factory=dict)
    source: dict[str, Any] = field(default_factory=dict)

    @property
    def namespace(self) -> str | None:
        namespace, sep, _ = self.event.repository.partition("/")
        return namespace if sep else None


def _row(event: Event, now: datetime, info: RequestInfo | None) -> dict[str, Any]:
    detail: dict[str, Any] = {"source": {"addr": source_addr(), "instanceID": INSTANCE_ID}}
    if info is not None:
        request = asdict(info)
        request.pop("actor", None)
        detail["request"] = request
    if event.from_repository:
        detail["fromRepository"] = event.from_repository
    if event.references:
        detail["references"] = list(event.references)
    if event.upstream:
        detail["upstream"] = event.upstream
    if event.pulls:
        detail["pulls"] = event.pulls
    namespace, sep, _ = event.repository.partition("/")
    return {
        "at": now,
        "action": event.action,
        "namespace": namespace if sep else None,
        "repository": event.repository,
        "media_type": event.media_type,
        "digest": event.digest,
        "size": event.size,
        "tag": event.tag,
        "actor": event.actor or (info.actor if info is not None else None) or acting_as.get(),
        "detail": detail,
    }


def append(db: Database, conn: Connection, entries: Sequence[Event | None]) -> None:
    """Append events at the end of a write transaction (only the commit, and the change
    log's own append, may follow)."""
    kept = [e for e in entries if e is not None]
    if not kept:
        return
    if not db.is_sqlite:
        conn.execute(text(f"SELECT pg_advisory_xact_lock({_PG_APPEND_LOCK})"))
        # Wakes deliverers (and watchers) on the other replicas at the commit, as changes do.
        conn.execute(text("SELECT pg_notify(:channel, :key)"), {"channel": CHANNEL, "key": CHANGES_SLOT})
    now = utcnow()
    describe = current_request.get()
    info = describe() if describe is not None else None
    conn.execute(events.insert(), [_row(e, now, info) for e in kept])
    conn.info[CHANGES_MARK] = True  # and this process's, after the commit


def _logged(row: Any) -> LoggedEvent:
    detail = row.detail or {}
    event = Event(
        row.action,
        row.repository,
        row.media_type,
        row.digest,
        row.size,
        row.tag,
        row.actor,
        detail.get("fromRepository"),
        tuple(detail.get("references") or ()),
        detail.get("upstream"),
        int(detail.get("pulls") or 0),
    )
    return LoggedEvent(row.id, as_utc(row.at), event, detail.get("request") or {}, detail.get("source") or {})


def after(conn: Connection, cursor: int, limit: int, namespace: str | None = None) -> list[LoggedEvent]:
    """Events after id `cursor`, oldest first, at most `limit`: a range scan of the key."""
    query = select(events).where(events.c.id > cursor).order_by(events.c.id).limit(limit)
    if namespace is not None:
        query = query.where(events.c.namespace == namespace)
    return [_logged(r) for r in conn.execute(query)]


def since(conn: Connection, when: datetime, limit: int, namespace: str | None = None) -> list[LoggedEvent]:
    query = select(events).where(events.c.at >= when).order_by(events.c.id).limit(limit)
    if namespace is not None:
        query = query.where(events.c.namespace == namespace)
    return [_logged(r) for r in conn.execute(query)]


def newest(conn: Connection) -> int:
    return conn.execute(select(func.max(events.c.id))).scalar() or 0


def count_after(conn: Connection, cursor: int) -> int:
    return conn.execute(select(func.count()).select_from(events).where(events.c.id > cursor)).scalar() or 0


def trim(conn: Connection, older_than: datetime, keep_after: int | None) -> int:
    """Drop events older than `older_than`, except those after `keep_after` (an endpoint's
    undelivered cursor). Returns how many went."""
    query = delete(events).where(events.c.at < older_than)
    if keep_after is not None:
        query = query.where(events.c.id <= keep_after)
    return conn.execute(query).rowcount or 0
