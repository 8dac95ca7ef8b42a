"""Trimming the event log: old events go, except what an enabled endpoint has not received;
an endpoint more than max_backlog behind loses its oldest (counted)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select, update

from registry.metadata.db import utcnow
from registry.metadata.schema import events as events_table
from registry.metadata.schema import notification_cursors
from registry.model import events
from registry.notifications import retention
from tests.support.backends import SQL_BACKENDS

pytestmark = pytest.mark.parametrize("backend", SQL_BACKENDS, indirect=True)


async def append(reg, n: int, age: timedelta) -> list[int]:
    def run(conn):
        events.append(
            reg.db, conn, [events.Event(events.PUSH, "team/app", digest=f"sha256:{i:064x}") for i in range(n)]
        )
        conn.execute(update(events_table).values(at=utcnow() - age))

    await reg.db.write(run)
    return await reg.db.read(lambda c: list(c.execute(select(events_table.c.id).order_by(events_table.c.id)).scalars()))


async def set_cursor(reg, name: str, cursor: int) -> None:
    def run(conn):
        conn.execute(
            reg.db.insert_ignore(notification_cursors, "endpoint"),
            {"endpoint": name, "cursor": cursor, "updated_at": utcnow(), "failures": 0, "delivered": 0, "dropped": 0},
        )
        conn.execute(update(notification_cursors).where(notification_cursors.c.endpoint == name).values(cursor=cursor))

    await reg.db.write(run)


async def remaining(reg) -> list[int]:
    return await reg.db.read(lambda c: list(c.execute(select(events_table.c.id).order_by(events_table.c.id)).scalars()))


async def test_old_events_go_but_not_before_an_endpoint_has_them(make_app):
    app = await make_app(notifications={"endpoints": [{"name": "slow", "url": "http://127.0.0.1:9/"}]})
    reg = app.app.state.runtime.registry
    ids = await append(reg, 10, timedelta(days=30))
    await set_cursor(reg, "slow", ids[3])  # has received the first four
    await retention.trim_once(reg)
    assert await remaining(reg) == ids[4:]
    await set_cursor(reg, "slow", ids[-1])
    await retention.trim_once(reg)
    assert await remaining(reg) == []


async def test_an_endpoint_too_far_behind_loses_its_oldest(make_app):
    app = await make_app(
        notifications={"endpoints": [{"name": "dead", "url": "http://127.0.0.1:9/"}], "max_backlog": 4}
    )
    reg = app.app.state.runtime.registry
    ids = await append(reg, 10, timedelta(days=30))
    await set_cursor(reg, "dead", ids[0] - 1)
    await retention.trim_once(reg)
    assert await remaining(reg) == ids[-4:]
    row = await reg.db.read(
        lambda c: c.execute(select(notification_cursors).where(notification_cursors.c.endpoint == "dead")).one()
    )
    assert (row.cursor, row.dropped) == (ids[-5], 6)


async def test_young_events_stay_without_endpoints(make_app):
    reg = (await make_app()).app.state.runtime.registry
    ids = await append(reg, 3, timedelta(hours=1))
    await retention.trim_once(reg)
    assert await remaining(reg) == ids
