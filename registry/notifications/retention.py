"""Trimming the event log: events older than notifications.retention go, except those an
enabled endpoint has not received yet; an endpoint more than notifications.max_backlog events
behind loses the oldest of them (counted, logged and in a metric), so one dead receiver cannot
make the log grow without bound."""

from __future__ import annotations

import logging
from datetime import timedelta

from sqlalchemy import Connection, select, update

from registry.metadata import leases
from registry.metadata.db import utcnow
from registry.metadata.schema import notification_cursors
from registry.metrics import notification_dropped
from registry.model import events
from registry.model.context import Registry
from registry.notifications import endpoints as endpoint_specs
from registry.periodic import every

log = logging.getLogger("okura.notifications")
LEASE = "event-log-trim"
MAX_INTERVAL = 600.0


def _trim(conn: Connection, names: list[str], retention: float, max_backlog: int) -> tuple[int, dict[str, int]]:
    newest = events.newest(conn)
    rows = conn.execute(
        select(notification_cursors.c.endpoint, notification_cursors.c.cursor).where(
            notification_cursors.c.endpoint.in_(names)
        )
    ).all()
    dropped: dict[str, int] = {}
    floor = newest - max_backlog
    cursors = []
    for row in rows:
        cursor = row.cursor
        if cursor < floor:
            conn.execute(
                update(notification_cursors)
                .where(notification_cursors.c.endpoint == row.endpoint, notification_cursors.c.cursor == cursor)
                .values(cursor=floor, dropped=notification_cursors.c.dropped + (floor - cursor), updated_at=utcnow())
            )
            dropped[row.endpoint] = floor - cursor
            cursor = floor
        cursors.append(cursor)
    keep_after = min(cursors) if cursors else None
    gone = events.trim(conn, utcnow() - timedelta(seconds=retention), keep_after)
    return gone, dropped


async def trim_once(reg: Registry) -> int:
    config = reg.config.notifications
    names = [e.name for e in await endpoint_specs.effective(reg) if not e.disabled]
    gone, dropped = await reg.db.write(_trim, names, config.retention, config.max_backlog)
    for name, count in dropped.items():
        notification_dropped.labels(name).inc(count)
        log.warning(
            "notification endpoint too far behind: oldest events dropped",
            extra={"endpoint": name, "dropped": count, "max_backlog": config.max_backlog},
        )
    return gone


def interval(retention: float) -> float:
    return min(MAX_INTERVAL, max(retention / 10, 5.0))


async def run_forever(reg: Registry) -> None:
    seconds = interval(reg.config.notifications.retention)

    async def work() -> None:
        if await leases.acquire(reg.db, LEASE, ttl=seconds * 1.5):
            await trim_once(reg)

    await every(seconds, "event log trim", work)
