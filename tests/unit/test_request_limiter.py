"""The request limiter (registry/api/limits.py) on its own: first come first served, a full
queue refused at once, a wait that runs out refused after it, nothing held after a cancel or
an exception, limits changed while requests run and wait; and the middleware driven with
plain ASGI scopes over an app that holds each request until the test lets it go."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from types import SimpleNamespace
from typing import Any

import pytest
from prometheus_client import REGISTRY

from registry.api.limits import Limiter, Refused, RequestLimits, request_kind
from registry.model.registry_config_spec import Effective
from registry.model.registry_config_spec import RequestLimits as Limits


async def settle() -> None:
    """Let every ready task run up to its next wait."""
    for _ in range(5):
        await asyncio.sleep(0)


def holder(limiter: Limiter, log: list[str], name: str) -> tuple[asyncio.Task[None], asyncio.Event]:
    """A task that takes a slot, notes it in `log`, and keeps it until the event is set."""
    done = asyncio.Event()

    async def run() -> None:
        await limiter.acquire()
        log.append(name)
        try:
            await done.wait()
        finally:
            limiter.release()

    return asyncio.create_task(run()), done


# -- Limiter ------------------------------------------------------------------------------------


async def test_no_limit_admits_everyone_and_counts_them() -> None:
    limiter = Limiter()
    for _ in range(50):
        await limiter.acquire()
    assert (limiter.running, limiter.queued) == (50, 0)
    for _ in range(50):
        limiter.release()
    assert limiter.running == 0


async def test_waiters_are_admitted_first_come_first_served() -> None:
    limiter = Limiter(Limits(max_running=1, max_in_queue=5, max_wait_in_queue=5))
    log: list[str] = []
    tasks = {}
    for name in "abcd":
        tasks[name] = holder(limiter, log, name)
        await settle()
    assert log == ["a"] and limiter.queued == 3
    for name in "abcd":
        task, done = tasks[name]
        done.set()
        await task
        await settle()
    assert log == ["a", "b", "c", "d"]
    assert (limiter.running, limiter.queued) == (0, 0)


async def test_a_newcomer_does_not_jump_the_line() -> None:
    """A slot freed while others wait goes to the first of them, not to whoever asks next."""
    limiter = Limiter(Limits(max_running=1, max_in_queue=5, max_wait_in_queue=5))
    log: list[str] = []
    a, a_done = holder(limiter, log, "a")
    await settle()
    b, b_done = holder(limiter, log, "b")
    await settle()
    a_done.set()
    c, c_done = holder(limiter, log, "c")  # asks in the same loop turn that a gives its slot back
    await a
    await settle()
    assert log == ["a", "b"]
    b_done.set()
    c_done.set()
    await asyncio.gather(b, c)
    assert log == ["a", "b", "c"] and limiter.running == 0


async def test_a_full_queue_is_refused_at_once() -> None:
    limiter = Limiter(Limits(max_running=2, max_in_queue=1, max_wait_in_queue=30))
    log: list[str] = []
    held = [holder(limiter, log, name) for name in "abc"]  # two run, one waits
    await settle()
    assert (limiter.running, limiter.queued) == (2, 1)
    start = time.monotonic()
    with pytest.raises(Refused, match="queue is full"):
        await limiter.acquire()
    assert time.monotonic() - start < 0.1
    assert (limiter.running, limiter.queued) == (2, 1)
    for task, done in held:
        done.set()
        await task
    assert (limiter.running, limiter.queued) == (0, 0)


async def test_no_queue_refuses_whoever_finds_no_slot() -> None:
    limiter = Limiter(Limits(max_running=1))
    await limiter.acquire()
    with pytest.raises(Refused):
        await limiter.acquire()
    limiter.release()
    await limiter.acquire()
    assert limiter.running == 1


async def test_a_wait_that_runs_out_is_refused_after_the_wait() -> None:
    limiter = Limiter(Limits(max_running=1, max_in_queue=1, max_wait_in_queue=0.2))
    await limiter.acquire()
    start = time.monotonic()
    with pytest.raises(Refused, match="waited 200ms"):
        await limiter.acquire()
    elapsed = time.monotonic() - start
    assert 0.18 <= elapsed < 1.0, elapsed
    assert (limiter.running, limiter.queued) == (1, 0)
    limiter.release()
    assert limiter.running == 0


async def test_no_wait_limit_waits_until_a_slot_frees() -> None:
    """maxWaitInQueue 0 means no time limit, as in OpenShift's registry."""
    limiter = Limiter(Limits(max_running=1, max_in_queue=1))
    await limiter.acquire()
    waiting = asyncio.create_task(limiter.acquire())
    await asyncio.sleep(0.3)
    assert not waiting.done() and limiter.queued == 1
    limiter.release()
    await waiting
    assert (limiter.running, limiter.queued) == (1, 0)


async def test_a_cancelled_waiter_leaves_the_line() -> None:
    limiter = Limiter(Limits(max_running=1, max_in_queue=2, max_wait_in_queue=30))
    await limiter.acquire()
    first = asyncio.create_task(limiter.acquire())
    second = asyncio.create_task(limiter.acquire())
    await settle()
    assert limiter.queued == 2
    first.cancel()
    with pytest.raises(asyncio.CancelledError):
        await first
    assert limiter.queued == 1
    limiter.release()  # goes to the second waiter, not to the one that left
    await second
    assert (limiter.running, limiter.queued) == (1, 0)
    limiter.release()
    assert limiter.running == 0


async def test_a_waiter_cancelled_as_it_gets_a_slot_passes_it_on() -> None:
    limiter = Limiter(Limits(max_running=1, max_in_queue=2, max_wait_in_queue=30))
    await limiter.acquire()
    first = asyncio.create_task(limiter.acquire())
    second = asyncio.create_task(limiter.acquire())
    await settle()
    limiter.release()  # hands the slot to `first`...
    first.cancel()  # ...which is cancelled before it runs again
    with pytest.raises(asyncio.CancelledError):
        await first
    await second  # the slot went on to the next in line
    assert (limiter.running, limiter.queued) == (1, 0)
    limiter.release()
    assert limiter.running == 0


async def test_raising_the_limit_admits_waiters_at_once() -> None:
    limiter = Limiter(Limits(max_running=1, max_in_queue=3, max_wait_in_queue=30))
    await limiter.acquire()
    waiters = [asyncio.create_task(limiter.acquire()) for _ in range(3)]
    await settle()
    limiter.configure(Limits(max_running=3, max_in_queue=3, max_wait_in_queue=30))
    await settle()
    assert [w.done() for w in waiters] == [True, True, False]
    assert (limiter.running, limiter.queued) == (3, 1)
    limiter.configure(Limits())  # no limit at all: everyone in
    await waiters[2]
    assert (limiter.running, limiter.queued) == (4, 0)


async def test_lowering_the_limit_lets_running_requests_finish_first() -> None:
    limiter = Limiter(Limits(max_running=3, max_in_queue=3, max_wait_in_queue=30))
    for _ in range(3):
        await limiter.acquire()
    limiter.configure(Limits(max_running=1, max_in_queue=3, max_wait_in_queue=30))
    waiting = asyncio.create_task(limiter.acquire())
    await settle()
    limiter.release()
    limiter.release()
    await settle()
    assert not waiting.done() and limiter.running == 1  # one still runs: the new limit is full
    limiter.release()
    await waiting
    assert (limiter.running, limiter.queued) == (1, 0)


async def test_a_limit_set_while_unlimited_requests_run_counts_them() -> None:
    limiter = Limiter()
    for _ in range(2):
        await limiter.acquire()
    limiter.configure(Limits(max_running=2))
    with pytest.raises(Refused):
        await limiter.acquire()
    limiter.release()
    await limiter.acquire()
    assert limiter.running == 2


async def test_the_queue_length_is_reported() -> None:
    lengths: list[int] = []
    limiter = Limiter(Limits(max_running=1, max_in_queue=2, max_wait_in_queue=30), on_queue=lengths.append)
    await limiter.acquire()
    waiters = [asyncio.create_task(limiter.acquire()) for _ in range(2)]
    await settle()
    limiter.release()
    await waiters[0]
    waiters[1].cancel()
    await asyncio.gather(waiters[1], return_exceptions=True)
    assert lengths == [1, 2, 1, 0]


# -- the middleware -----------------------------------------------------------------------------


class HeldApp:
    """An ASGI app that answers 200 only when the test releases the request (by path)."""

    def __init__(self) -> None:
        self.gates: dict[str, asyncio.Event] = {}
        self.entered: list[str] = []
        self.state = SimpleNamespace()

    def gate(self, path: str) -> asyncio.Event:
        return self.gates.setdefault(path, asyncio.Event())

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        self.entered.append(scope["path"])
        if scope["path"].endswith("/boom"):
            raise RuntimeError("boom")
        await self.gate(scope["path"]).wait()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})


class Settings:
    """A mutable stand-in for the registry's settings: the limits in effect now."""

    def __init__(self, read: Limits | None = None, write: Limits | None = None):
        self.current: Effective | None = Effective(read=read or Limits(), write=write or Limits())

    def __call__(self) -> Effective | None:
        return self.current


async def call(app: Callable[..., Awaitable[None]], path: str, method: str = "GET") -> dict[str, Any]:
    """Drive one request; its status, headers and body."""
    scope = {"type": "http", "method": method, "path": path, "headers": [], "query_string": b""}
    answer: dict[str, Any] = {"body": b""}

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            answer["status"] = message["status"]
            answer["headers"] = {k.decode().lower(): v.decode() for k, v in message["headers"]}
        else:
            answer["body"] += message.get("body", b"")

    await app(scope, receive, send)
    return answer


def throttled(kind: str) -> float:
    return REGISTRY.get_sample_value("okura_requests_throttled_total", {"kind": kind}) or 0.0


def test_request_kinds() -> None:
    def kind(method: str, path: str, type_: str = "http") -> str | None:
        return request_kind({"type": type_, "method": method, "path": path})

    assert kind("GET", "/v2/") == kind("HEAD", "/v2/a/b/blobs/sha256:00") == kind("GET", "/v2") == "read"
    assert kind("PUT", "/v2/a/manifests/t") == kind("POST", "/v2/a/blobs/uploads/") == "write"
    assert kind("DELETE", "/v2/a/manifests/t") == kind("PATCH", "/v2/a/blobs/uploads/u") == "write"
    probes = ("/healthz", "/livez", "/readyz")  # a saturated registry must still answer its probes
    for path in (*probes, "/metrics", "/apis/image.openshift.io/v1", "/api/v1", "/openshift/token", "/v20"):
        assert kind("GET", path) is None, path
    assert kind("GET", "/v2/", "websocket") is None
    assert request_kind({"type": "lifespan"}) is None


async def test_requests_beyond_the_queue_get_429_with_the_oci_error() -> None:
    inner = HeldApp()
    app = RequestLimits(inner, Settings(read=Limits(max_running=1, max_in_queue=1, max_wait_in_queue=2.5)))
    before = throttled("read")
    running = asyncio.create_task(call(app, "/v2/a/blobs/one"))
    queued = asyncio.create_task(call(app, "/v2/a/blobs/two"))
    await settle()
    refused = await call(app, "/v2/a/blobs/three")
    assert refused["status"] == 429
    assert refused["headers"]["retry-after"] == "3"
    assert refused["headers"]["content-type"] == "application/json"
    (error,) = json.loads(refused["body"])["errors"]
    assert error["code"] == "TOOMANYREQUESTS"
    assert error["message"] == (
        "too many requests: the registry is serving its maximum of 1 read requests; retry later"
    )
    assert error["detail"]["maxRunning"] == 1 and error["detail"]["maxWaitInQueue"] == "2.5s"
    assert throttled("read") == before + 1
    head = await call(app, "/v2/a/blobs/three", "HEAD")
    assert head["status"] == 429 and head["body"] == b"" and int(head["headers"]["content-length"]) > 0
    assert inner.entered == ["/v2/a/blobs/one"]
    inner.gate("/v2/a/blobs/one").set()
    inner.gate("/v2/a/blobs/two").set()
    assert (await running)["status"] == 200
    assert (await queued)["status"] == 200
    assert app.limiter("read").running == 0


async def test_a_queued_request_gets_429_when_its_wait_runs_out() -> None:
    inner = HeldApp()
    app = RequestLimits(inner, Settings(read=Limits(max_running=1, max_in_queue=1, max_wait_in_queue=0.2)))
    running = asyncio.create_task(call(app, "/v2/a/blobs/one"))
    await settle()
    start = time.monotonic()
    refused = await call(app, "/v2/a/blobs/two")
    assert refused["status"] == 429 and refused["headers"]["retry-after"] == "1"
    assert 0.18 <= time.monotonic() - start < 1.0
    assert json.loads(refused["body"])["errors"][0]["detail"]["reason"] == "it waited 200ms in the queue"
    inner.gate("/v2/a/blobs/one").set()
    await running
    assert (app.limiter("read").running, app.limiter("read").queued) == (0, 0)


async def test_read_limits_leave_writes_and_other_paths_alone() -> None:
    inner = HeldApp()
    app = RequestLimits(inner, Settings(read=Limits(max_running=1)))
    running = asyncio.create_task(call(app, "/v2/a/blobs/one"))
    await settle()
    for gate in ("/v2/a/blobs/uploads/", "/healthz", "/metrics", "/apis/x/v1/things", "/openshift/token"):
        inner.gate(gate).set()
    assert (await call(app, "/v2/a/blobs/uploads/", "POST"))["status"] == 200
    for path in ("/healthz", "/metrics", "/apis/x/v1/things", "/openshift/token"):
        assert (await call(app, path))["status"] == 200, path
    assert (await call(app, "/v2/a/blobs/two"))["status"] == 429
    inner.gate("/v2/a/blobs/one").set()
    await running


async def test_write_limits_apply_to_every_other_method() -> None:
    inner = HeldApp()
    app = RequestLimits(inner, Settings(write=Limits(max_running=1)))
    running = asyncio.create_task(call(app, "/v2/a/blobs/uploads/", "POST"))
    await settle()
    for method in ("PUT", "PATCH", "DELETE", "POST"):
        assert (await call(app, "/v2/a/manifests/t", method))["status"] == 429, method
    inner.gate("/v2/a/manifests/t").set()
    assert (await call(app, "/v2/a/manifests/t"))["status"] == 200  # a read
    inner.gate("/v2/a/blobs/uploads/").set()
    await running


async def test_the_slot_is_released_when_the_app_fails_or_the_request_is_cancelled() -> None:
    inner = HeldApp()
    app = RequestLimits(inner, Settings(read=Limits(max_running=1, max_in_queue=1, max_wait_in_queue=30)))
    with pytest.raises(RuntimeError):
        await call(app, "/v2/a/boom")
    assert app.limiter("read").running == 0
    running = asyncio.create_task(call(app, "/v2/a/blobs/held"))
    queued = asyncio.create_task(call(app, "/v2/a/blobs/waits"))
    await settle()
    assert (app.limiter("read").running, app.limiter("read").queued) == (1, 1)
    queued.cancel()  # the client left while waiting
    running.cancel()  # the client left mid-response
    await asyncio.gather(running, queued, return_exceptions=True)
    assert (app.limiter("read").running, app.limiter("read").queued) == (0, 0)
    inner.gate("/v2/a/blobs/again").set()
    assert (await call(app, "/v2/a/blobs/again"))["status"] == 200


async def test_limits_change_live() -> None:
    inner = HeldApp()
    settings = Settings(read=Limits(max_running=1, max_in_queue=1, max_wait_in_queue=30))
    app = RequestLimits(inner, settings)
    first = asyncio.create_task(call(app, "/v2/a/blobs/one"))
    second = asyncio.create_task(call(app, "/v2/a/blobs/two"))
    await settle()
    assert (await call(app, "/v2/a/blobs/three"))["status"] == 429
    # A higher limit (and no queue): the waiting request starts with the next request that sees it.
    settings.current = Effective(read=Limits(max_running=3))
    third = asyncio.create_task(call(app, "/v2/a/blobs/three"))
    await settle()
    assert sorted(inner.entered) == ["/v2/a/blobs/one", "/v2/a/blobs/three", "/v2/a/blobs/two"]
    assert (await call(app, "/v2/a/blobs/four"))["status"] == 429
    # No limit: everything goes through while the three still run.
    settings.current = Effective()
    inner.gate("/v2/a/blobs/four").set()
    assert (await call(app, "/v2/a/blobs/four"))["status"] == 200
    settings.current = None  # no settings (yet): no limits either
    assert (await call(app, "/v2/a/blobs/four"))["status"] == 200
    for path in ("one", "two", "three"):
        inner.gate(f"/v2/a/blobs/{path}").set()
    assert [r["status"] for r in await asyncio.gather(first, second, third)] == [200, 200, 200]
    assert app.limiter("read").running == 0


async def test_limits_come_from_the_runtime_on_the_app_state() -> None:
    inner = HeldApp()
    app = RequestLimits(inner)
    assert app.state is inner.state
    inner.gate("/v2/").set()
    assert (await call(app, "/v2/"))["status"] == 200  # no runtime yet (lifespan): no limits
    inner.state.runtime = SimpleNamespace(registry=SimpleNamespace())
    assert (await call(app, "/v2/"))["status"] == 200  # a registry without settings: no limits
    settings = SimpleNamespace(current=Effective(read=Limits(max_running=1)))
    inner.state.runtime.registry.settings = settings
    held = asyncio.create_task(call(app, "/v2/a/blobs/held"))
    await settle()
    assert (await call(app, "/v2/"))["status"] == 429
    inner.gate("/v2/a/blobs/held").set()
    await held
