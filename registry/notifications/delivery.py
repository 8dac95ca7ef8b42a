"""Delivering the event log to webhook endpoints: per endpoint, in order, at least once.

Each endpoint has a cursor in the database (notification_cursors): the id of the last event it
received or was skipped past. A deliverer reads the events after the cursor in batches (a range
scan of the log's key: O(batch), whatever the log's size), drops those the endpoint ignores,
POSTs the rest as one body, and moves the cursor only after a 2xx answer. So a restart, a
`kill -9` or a dead replica loses nothing: the next deliverer starts from the cursor, and at
worst sends again the batch whose answer it never saw (receivers de-duplicate by event id).

One deliverer per endpoint across all replicas: it holds a database lease named after the
endpoint while it works, renewed as it goes; a replica that dies lets the lease expire and
another takes over. Endpoints are independent tasks: a receiver that is down or slow delays
only itself, and its backlog lives in the database, not in memory. Failures back off
exponentially (the endpoint's backoff, doubled per failure up to max_backoff, with jitter).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, select, update

from registry.config import EndpointConfig
from registry.errors import Unavailable
from registry.metadata import leases
from registry.metadata.db import utcnow
from registry.metadata.schema import notification_cursors
from registry.metrics import (
    notification_events,
    notification_failures,
    notification_last_success,
    notification_pending,
    notification_sent,
)
from registry.model import events
from registry.model.context import Registry
from registry.model.events import LoggedEvent
from registry.notifications import endpoints as endpoint_specs
from registry.notifications import pulls
from registry.notifications.envelope import EVENT_ID_HEADER, SIGNATURE_HEADER, body, event_id, first_batch, signature
from registry.periodic import stop_task

if TYPE_CHECKING:
    import httpx

log = logging.getLogger("okura.notifications")

LEASE_TTL = 10.0  # short: after a kill -9 another deliverer takes over within seconds
READ_BATCH = 500  # events read per step (at most max_batch_events of them are sent at once)
IDLE_WAIT = 2.0  # seconds between looks at the log when nothing wakes the deliverer
SUPERVISE_EVERY = 5.0  # how often the set of endpoints is read again (API changes, config)
PENDING_EVERY = 2.0  # seconds between updates of the pending gauge (a count query)
ERROR_TEXT_MAX = 300
USER_AGENT = "okura-notifications"


def ignored(endpoint: EndpointConfig, event: events.Event) -> bool:
    """distribution's ignore rules, plus pulls (off unless the endpoint asks for them)."""
    if event.action in endpoint.ignore_actions:
        return True
    if event.media_type and event.media_type in endpoint.ignore_media_types:
        return True
    return event.action == events.PULL and not endpoint.pulls


def next_backoff(endpoint: EndpointConfig, failures: int, rand: random.Random | None = None) -> float:
    """The wait after `failures` failures in a row: backoff x 2^(failures-1), capped at
    max_backoff, then jittered to between half and all of it (so endpoints that fail together
    do not retry together)."""
    base = min(endpoint.max_backoff, endpoint.backoff * (2 ** max(failures - 1, 0)))
    return base * (0.5 + 0.5 * (rand or random).random())


# -- delivery state in the database ---------------------------------------------------------------


@dataclass(frozen=True)
class Cursor:
    endpoint: str
    cursor: int
    failures: int


def _load_cursor(conn: Connection, db: Any, name: str) -> Cursor:
    row = conn.execute(select(notification_cursors).where(notification_cursors.c.endpoint == name)).first()
    if row is not None:
        return Cursor(name, row.cursor, row.failures)
    # A new endpoint starts at the end of the log: it gets what happens from now on.
    start = events.newest(conn)
    conn.execute(
        db.insert_ignore(notification_cursors, "endpoint"),
        {"endpoint": name, "cursor": start, "updated_at": utcnow(), "failures": 0, "delivered": 0, "dropped": 0},
    )
    row = conn.execute(select(notification_cursors).where(notification_cursors.c.endpoint == name)).one()
    return Cursor(name, row.cursor, row.failures)


def _advance(conn: Connection, name: str, frm: int, to: int, delivered: int) -> bool:
    """Move the cursor from `frm` to `to` (False when someone else moved it meanwhile)."""
    now = utcnow()
    values: dict[str, Any] = {"cursor": to, "updated_at": now, "failures": 0}
    if delivered:
        values.update(last_success_at=now, delivered=notification_cursors.c.delivered + delivered)
    moved = conn.execute(
        update(notification_cursors)
        .where(notification_cursors.c.endpoint == name, notification_cursors.c.cursor == frm)
        .values(**values)
    ).rowcount
    return bool(moved)


def _failed(conn: Connection, name: str, error: str) -> int:
    now = utcnow()
    conn.execute(
        update(notification_cursors)
        .where(notification_cursors.c.endpoint == name)
        .values(
            last_error=error[:ERROR_TEXT_MAX],
            last_error_at=now,
            updated_at=now,
            failures=notification_cursors.c.failures + 1,
        )
    )
    return conn.execute(
        select(notification_cursors.c.failures).where(notification_cursors.c.endpoint == name)
    ).scalar_one()


# -- one endpoint --------------------------------------------------------------------------------


class DeliveryFailed(Exception):
    """A request that did not end in a 2xx answer; the message says why, in one line."""


def _lease_name(endpoint: str) -> str:
    return f"notify:{endpoint}"[:64]


def _base_url(reg: Registry) -> str:
    http = reg.config.http
    return (http.base_url or http.public_url or f"http://{events.source_addr()}").rstrip("/")


class Deliverer:
    """Delivers the log to one endpoint, forever (until cancelled)."""

    def __init__(self, reg: Registry, endpoint: EndpointConfig) -> None:
        self.reg = reg
        self.endpoint = endpoint
        self.secret = endpoint.secret.encode() if endpoint.secret else None
        self._holding = False
        self._renewed = float("-inf")  # when the lease was last taken or renewed
        self._cursor: int | None = None  # known while the lease is held without a break
        self._pending_at = float("-inf")

    async def run(self) -> None:
        ep = self.endpoint
        import httpx  # here, not at start: a registry without endpoints never loads it

        timeout = httpx.Timeout(ep.timeout, connect=min(ep.timeout, 10.0))
        async with httpx.AsyncClient(timeout=timeout, follow_redirects=False, trust_env=False) as client:
            while True:
                seen = self.reg.waiter.sequence if self.reg.waiter is not None else 0
                try:
                    busy = await self._step(client)
                except asyncio.CancelledError:
                    raise
                except Unavailable as e:  # a database outage: the cursor is safe, try again later
                    log.warning("notification delivery paused: %s", e.message, extra={"endpoint": ep.name})
                    busy = False
                except Exception:
                    log.exception("notification delivery step failed", extra={"endpoint": ep.name})
                    busy = False
                if not busy:
                    await self._idle(seen)

    async def _idle(self, seen: int) -> None:
        if self.reg.waiter is not None:
            await self.reg.waiter.wait(seen, IDLE_WAIT)
        else:
            await asyncio.sleep(IDLE_WAIT)

    async def _hold_lease(self) -> bool:
        self._holding = await leases.acquire(self.reg.db, _lease_name(self.endpoint.name), ttl=LEASE_TTL)
        if self._holding:
            self._renewed = time.monotonic()
        else:
            self._cursor = None  # another deliverer may move it: read it again when back
        return self._holding

    async def _leased(self) -> bool:
        """Hold the lease, renewing it only when a third of its time has passed: a busy
        deliverer does not write it once per batch."""
        if self._holding and time.monotonic() - self._renewed < LEASE_TTL / 3:
            return True
        return await self._hold_lease()

    async def _renewing(self) -> None:
        """Renew the lease while a request is out (it may take the endpoint's whole timeout):
        the lease stays short, so a replica that dies hands over within LEASE_TTL."""
        while True:
            await asyncio.sleep(LEASE_TTL / 3)
            with contextlib.suppress(Exception):
                await self._hold_lease()

    async def _step(self, client: httpx.AsyncClient) -> bool:
        """One batch: True when there may be more to do at once."""
        ep, db = self.endpoint, self.reg.db
        if not await self._leased():
            return False  # another replica delivers to this endpoint
        if self._cursor is None:
            self._cursor = (await db.write(_load_cursor, db, ep.name)).cursor
        cursor = self._cursor
        batch = await db.read(events.after, cursor, READ_BATCH)
        await self._report_pending(cursor)
        if not batch:
            return False
        wanted = [e for e in batch if not ignored(ep, e.event)]
        if not wanted:  # only ignored events: skip past them
            await self._move(cursor, batch[-1].id, 0)
            return True
        base = _base_url(self.reg)
        count = first_batch(wanted, ep.max_batch_events, ep.max_batch_bytes, ep.format, base)
        sending = wanted[:count]
        # The cursor moves past the ignored events before the last one sent, never past one
        # not yet sent.
        last_sent = sending[-1].id
        try:
            await self._post(client, sending, base)
        except DeliveryFailed as e:
            failures = await db.write(_failed, ep.name, str(e))
            notification_failures.labels(ep.name).inc()
            wait = next_backoff(ep, failures)
            log.warning(
                "notification delivery failed",
                extra={"endpoint": ep.name, "events": len(sending), "error": str(e), "retry_in_s": round(wait, 1)},
            )
            await self._back_off(wait)
            return False
        notification_sent.labels(ep.name).inc(len(sending))
        notification_events.labels(ep.name).inc(len(sending))
        notification_last_success.labels(ep.name).set(time.time())
        await self._move(cursor, last_sent, len(sending))
        return True

    async def _move(self, frm: int, to: int, delivered: int) -> None:
        if await self.reg.db.write(_advance, self.endpoint.name, frm, to, delivered):
            self._cursor = to
        else:  # another deliverer moved it (this one lost its lease for a while): read it again
            log.warning("notification cursor moved by another deliverer", extra={"endpoint": self.endpoint.name})
            self._cursor = None

    async def _report_pending(self, cursor: int) -> None:
        if time.monotonic() - self._pending_at < PENDING_EVERY:
            return
        self._pending_at = time.monotonic()
        newest = await self.reg.db.read(events.newest)
        notification_pending.labels(self.endpoint.name).set(max(newest - cursor, 0))

    async def _post(self, client: httpx.AsyncClient, sending: Sequence[LoggedEvent], base: str) -> None:
        ep = self.endpoint
        payload, content_type = body(sending, ep.format, base)
        headers = {"Content-Type": content_type, "User-Agent": USER_AGENT, **dict(ep.headers)}
        headers[EVENT_ID_HEADER] = ",".join(event_id(e.id) for e in sending)
        if self.secret is not None:
            headers[SIGNATURE_HEADER] = signature(self.secret, payload)
        import httpx

        renewer = asyncio.create_task(self._renewing())
        try:
            response = await client.post(ep.url, content=payload, headers=headers)
        except httpx.TimeoutException:
            raise DeliveryFailed(f"no answer within {ep.timeout:g}s") from None
        except httpx.HTTPError as e:
            raise DeliveryFailed(f"{type(e).__name__}: {str(e)[:200] or 'connection failed'}") from None
        finally:
            renewer.cancel()
        if 200 <= response.status_code < 300:
            return
        if 300 <= response.status_code < 400:
            where = response.headers.get("location", "")[:200]
            raise DeliveryFailed(f"HTTP {response.status_code} redirect to {where!r}: endpoints must answer 2xx")
        raise DeliveryFailed(f"HTTP {response.status_code}: {response.text[:200]!r}")

    async def _back_off(self, seconds: float) -> None:
        """Wait, keeping the lease (so no other replica starts a parallel retry)."""
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            await asyncio.sleep(min(left, LEASE_TTL / 3))
            await self._hold_lease()


# -- all endpoints ----------------------------------------------------------------------------------


async def run_forever(reg: Registry) -> None:
    """Keep one Deliverer task per enabled endpoint (config and API), restarting a task when
    its endpoint's definition changes."""
    running: dict[str, tuple[EndpointConfig, asyncio.Task[None]]] = {}
    try:
        while True:
            try:
                wanted = {e.name: e for e in await endpoint_specs.effective(reg) if not e.disabled}
            except Exception as e:
                if isinstance(e, Unavailable):
                    log.warning("reading notification endpoints failed: %s", e.message)
                else:
                    log.exception("reading notification endpoints failed")
                wanted = {name: spec for name, (spec, _) in running.items()}
            pulls.set_wanted(any(e.pulls for e in wanted.values()))
            for name, (spec, task) in list(running.items()):
                if wanted.get(name) != spec or task.done():
                    await stop_task(task)
                    del running[name]
            for name, spec in wanted.items():
                if name not in running:
                    running[name] = (spec, asyncio.create_task(Deliverer(reg, spec).run(), name=f"notify-{name}"))
            await asyncio.sleep(SUPERVISE_EVERY)
    finally:
        for _, task in running.values():
            task.cancel()
        await asyncio.gather(*(t for _, t in running.values()), return_exceptions=True)
