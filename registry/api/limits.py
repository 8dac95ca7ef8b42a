"""OpenShift's registry request limits (the Config resource's spec.requests.read and .write) on
the registry API under /v2/: at most `maxRunning` requests of a kind at once, up to `maxInQueue`
more waiting in line at most `maxWaitInQueue` for a slot, the rest refused with 429.

Reads are GET and HEAD, writes every other method. A slot is held until the app's call returns,
that is until the response is entirely sent (a streamed or sendfile'd blob body included), and
is given back however the call ends. Each process counts its own requests, as each of
OpenShift's registry pods does. The limits are read on every request, so a change applies to
the next requests; requests already running or waiting keep their place."""

from __future__ import annotations

import asyncio
import collections
import math
from collections.abc import Callable
from typing import Any

from starlette.types import ASGIApp, Receive, Scope, Send

from registry import metrics
from registry.api.errors import error_response
from registry.errors import TooManyRequests
from registry.model.registry_config_spec import Effective
from registry.model.registry_config_spec import RequestLimits as Limits
from registry.units import format_go_duration

READ, WRITE = "read", "write"
_READ_METHODS = frozenset({"GET", "HEAD"})
_UNLIMITED = Limits()


class Refused(Exception):
    """No slot for this request: the queue was full, or its wait ran out."""

    def __init__(self, reason: str):
        self.reason = reason
        super().__init__(reason)


class Limiter:
    """At most `limits.max_running` holders at once (any number when it is 0); up to
    `limits.max_in_queue` more wait, first come first served, at most
    `limits.max_wait_in_queue` seconds (no time limit when it is 0, as in OpenShift).

    Holders are counted even while there is no limit, so that a limit set while requests run
    takes those into account. One event loop only: no locks, every change is synchronous."""

    def __init__(self, limits: Limits = _UNLIMITED, on_queue: Callable[[int], None] | None = None):
        self.limits = limits
        self.running = 0
        self._waiters: collections.deque[asyncio.Future[None]] = collections.deque()
        self._on_queue = on_queue  # told the queue's length whenever it changes (a gauge)

    @property
    def queued(self) -> int:
        return len(self._waiters)

    def configure(self, limits: Limits) -> None:
        """Apply new limits. More room (or none at all) admits waiters at once; less room
        admits nobody until enough holders leave. Waiters keep their place and deadline even
        if the queue is now shorter than the line: they were promised that much."""
        if limits != self.limits:
            self.limits = limits
            self._admit_waiters()

    async def acquire(self) -> None:
        """Take a slot, waiting in line if need be. Raises Refused when there is no room in
        line or the wait runs out; cancelled, it leaves the line (or gives back the slot it
        was just handed)."""
        if not self.limits.enabled or (not self._waiters and self._has_room()):  # no jumping the line
            self.running += 1
            return
        if len(self._waiters) >= self.limits.max_in_queue:
            raise Refused("the queue is full")
        await self._wait_in_line(self.limits.max_wait_in_queue)

    def release(self) -> None:
        """Give back a slot, to the first waiter if it fits under the current limits."""
        self.running -= 1
        self._admit_waiters()

    # -- internals ----------------------------------------------------------------------------

    def _has_room(self) -> bool:
        return not self.limits.enabled or self.running < self.limits.max_running

    def _admit_waiters(self) -> None:
        admitted = False
        while self._waiters and self._has_room():
            waiter = self._waiters.popleft()
            if not waiter.done():  # a waiter that gave up is skipped, not counted
                waiter.set_result(None)
                self.running += 1  # counted now, so the next release sees it
            admitted = True
        if admitted:
            self._queue_changed()

    async def _wait_in_line(self, wait: float) -> None:
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        self._queue_changed()
        try:
            async with asyncio.timeout(wait if wait > 0 else None):
                await waiter
        except TimeoutError:
            if self._handed_slot(waiter):
                return  # the slot came just as the wait ran out: take it
            self._leave_line(waiter)
            raise Refused(f"it waited {format_go_duration(round(wait * 1e9))} in the queue") from None
        except BaseException:  # cancelled (the client left, the server stops): hold nothing
            if self._handed_slot(waiter):
                self.release()
            else:
                self._leave_line(waiter)
            raise

    @staticmethod
    def _handed_slot(waiter: asyncio.Future[None]) -> bool:
        return waiter.done() and not waiter.cancelled()

    def _leave_line(self, waiter: asyncio.Future[None]) -> None:
        waiter.cancel()
        if waiter in self._waiters:
            self._waiters.remove(waiter)
            self._queue_changed()

    def _queue_changed(self) -> None:
        if self._on_queue is not None:
            self._on_queue(len(self._waiters))


def request_kind(scope: Scope) -> str | None:
    """READ or WRITE for a registry API request (/v2 and below), None for anything else
    (health, metrics, /api, /apis, the token endpoint)."""
    if scope["type"] != "http":
        return None
    path = scope["path"]
    if path != "/v2" and not path.startswith("/v2/"):
        return None
    return READ if scope["method"] in _READ_METHODS else WRITE


def retry_after(limits: Limits) -> int:
    """Seconds a refused client should wait: about as long as a queued request may wait."""
    return max(1, math.ceil(limits.max_wait_in_queue))


def too_many_requests(kind: str, limits: Limits, reason: str) -> TooManyRequests:
    detail = {
        "kind": kind,
        "reason": reason,
        "maxRunning": limits.max_running,
        "maxInQueue": limits.max_in_queue,
        "maxWaitInQueue": format_go_duration(round(limits.max_wait_in_queue * 1e9)),
    }
    message = (
        f"too many requests: the registry is serving its maximum of {limits.max_running} {kind} requests; retry later"
    )
    return TooManyRequests(message, detail=detail, headers={"Retry-After": str(retry_after(limits))})


class RequestLimits:
    """ASGI middleware around the Starlette app: admits each /v2/ request under the limits in
    effect, answers 429 to those that find no slot.

    `settings` returns the Effective settings in force now (None: no limits); by default they
    come from the runtime on the app's state, which exists only once the lifespan opened it."""

    def __init__(self, app: ASGIApp, settings: Callable[[], Effective | None] | None = None):
        self.app = app
        self._settings = settings or self._runtime_settings
        self._limiters = {kind: Limiter(on_queue=metrics.requests_queued.labels(kind).set) for kind in (READ, WRITE)}

    @property
    def state(self) -> Any:
        """The wrapped app's state: callers reach the runtime through the app they were given."""
        return self.app.state  # type: ignore[attr-defined]

    def limiter(self, kind: str) -> Limiter:
        return self._limiters[kind]

    def _runtime_settings(self) -> Effective | None:
        runtime = getattr(getattr(self.app, "state", None), "runtime", None)
        registry = getattr(runtime, "registry", None)
        settings = getattr(registry, "settings", None)  # None until the Config resource is wired in
        return getattr(settings, "current", None)

    def _limits(self, kind: str) -> Limits:
        effective = self._settings()
        if effective is None:
            return _UNLIMITED
        return effective.read if kind == READ else effective.write

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = request_kind(scope)
        if kind is None:
            await self.app(scope, receive, send)
            return
        limits = self._limits(kind)
        limiter = self._limiters[kind]
        limiter.configure(limits)
        try:
            await limiter.acquire()
        except Refused as refused:
            metrics.requests_throttled.labels(kind).inc()
            response = error_response(too_many_requests(kind, limits, refused.reason), head=scope["method"] == "HEAD")
            await response(scope, receive, send)
            return
        try:
            await self.app(scope, receive, send)
        finally:
            limiter.release()
