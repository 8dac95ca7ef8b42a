"""registry.logs.LogRing: the bounded ring of a process's recent log lines that the pod log API
serves (lines since a time, the last N, waiting for new ones without blocking the threads that
log), and setup_logging installing it beside stderr with the same formatter."""

from __future__ import annotations

import asyncio
import io
import logging
import threading
import time
from collections.abc import Iterator

import pytest

from registry import logs
from registry.logs import LogfmtFormatter, LogRing, log_ring, setup_logging, size_log_ring


def record(msg: str, created: float | None = None, **extra: object) -> logging.LogRecord:
    r = logging.LogRecord("okura", logging.INFO, __file__, 1, msg, (), None)
    if created is not None:
        r.created = created
    r.__dict__.update(extra)
    return r


def ring_of(capacity: int = 10) -> LogRing:
    ring = LogRing(capacity)
    ring.setFormatter(LogfmtFormatter())
    return ring


def test_keeps_the_last_lines_in_order_with_their_times():
    ring = ring_of(3)
    for n in range(5):
        ring.handle(record(f"line {n}", created=1_700_000_000 + n + 0.123456))
    lines = ring.lines()
    assert [line.seq for line in lines] == [3, 4, 5]
    assert [f'msg="line {n}"' in line.text for n, line in zip((2, 3, 4), lines, strict=True)] == [True] * 3
    assert 'msg="line 4"' in lines[-1].text and lines[-1].text.startswith('time="2023-11-14T22:13:24.123Z"')
    assert lines[-1].time_ns == 1_700_000_004_123_456_000  # microseconds: what a float holds
    assert ring.last_seq == 5 and ring.capacity == 3


def test_lines_since_a_time_and_the_last_n():
    ring = ring_of()
    for n in range(6):
        ring.handle(record(f"m{n}", created=100.0 + n))
    assert [line.text.split("msg=")[1][:2] for line in ring.lines(since_ns=103 * 10**9)] == ["m3", "m4", "m5"]
    assert [line.seq for line in ring.lines(tail=2)] == [5, 6]
    assert [line.seq for line in ring.lines(since_ns=101 * 10**9, tail=10)] == [2, 3, 4, 5, 6]
    assert ring.lines(tail=0) == []
    lines, seq = ring.snapshot(since_ns=10**12)
    assert (lines, seq) == ([], 6)  # nothing selected, but a follower continues after line 6
    assert [line.seq for line in ring.after(4)] == [5, 6]
    assert ring.after(6) == []


def test_resize_keeps_the_newest():
    ring = ring_of(5)
    for n in range(5):
        ring.handle(record(f"m{n}"))
    ring.resize(2)
    assert [line.seq for line in ring.lines()] == [4, 5]
    ring.resize(0)
    ring.handle(record("dropped"))
    assert ring.lines() == [] and ring.last_seq == 6


async def test_a_waiter_wakes_when_a_thread_logs():
    ring = ring_of()
    seq = ring.last_seq
    thread = threading.Timer(0.05, lambda: ring.handle(record("from a thread")))
    started = time.monotonic()
    thread.start()
    assert await ring.wait(seq, 5.0) is True
    assert time.monotonic() - started < 2.0
    assert [line.seq for line in ring.after(seq)] == [seq + 1]
    thread.join()


async def test_wait_times_out_and_returns_at_once_when_lines_are_there():
    ring = ring_of()
    started = time.monotonic()
    assert await ring.wait(0, 0.05) is False
    assert 0.04 <= time.monotonic() - started < 1.0
    ring.handle(record("one"))
    assert await ring.wait(0, 5.0) is True
    assert not ring._waiters  # every waiter is removed, woken or not


async def test_a_waiter_cancelled_leaves_nothing_behind():
    ring = ring_of()
    task = asyncio.create_task(ring.wait(0, 30.0))
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert not ring._waiters
    ring.handle(record("after"))  # waking nobody is fine


@pytest.fixture
def clean_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level, ring = root.handlers[:], root.level, logs._ring
    logs._ring = None
    try:
        yield
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
        logs._ring = ring


def test_setup_logging_installs_the_ring_beside_stderr_with_the_same_line(clean_logging, monkeypatch):
    stderr = io.StringIO()
    monkeypatch.setattr("sys.stderr", stderr)
    setup_logging("info", "logfmt", ring_lines=50)
    ring = log_ring()
    assert ring is not None and ring.capacity == 50
    root = logging.getLogger()
    assert root.handlers[1] is ring and root.handlers[0].formatter is ring.formatter
    logging.getLogger("okura.test").info("hello there", extra={"repository": "team/app"})
    (line,) = ring.lines()[-1:]
    assert stderr.getvalue().splitlines()[-1] == line.text
    assert 'msg="hello there" repository=team/app logger=okura.test' in line.text
    # Set up again (a worker process): the same ring, sized anew, its lines kept.
    setup_logging("info", "json", ring_lines=20)
    assert log_ring() is ring and ring.capacity == 20 and ring.lines()[-1] == line
    size_log_ring(5)
    assert ring.capacity == 5
