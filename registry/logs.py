"""Structured logs: logfmt (`time="…" level=info msg="…" key=value`) or JSON lines, written to
stderr and kept in a bounded in-memory ring (the last `log.ring_lines` lines of this process,
which the pod log API serves: `kubectl logs`, `okura logs`)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import sys
import threading
from collections import deque
from datetime import UTC, datetime
from typing import Any, NamedTuple

_STANDARD = set(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {
    "message",
    "asctime",
    "taskName",
    "color_message",
}


def _fields(record: logging.LogRecord) -> dict[str, Any]:
    return {k: v for k, v in record.__dict__.items() if k not in _STANDARD and k[0] != "_"}


_second_cache: tuple[int, str] = (-1, "")


def _time(record: logging.LogRecord) -> str:
    # One line per request: format the seconds once per second, append milliseconds.
    global _second_cache
    second = int(record.created)
    if _second_cache[0] != second:
        _second_cache = (second, datetime.fromtimestamp(second, UTC).strftime("%Y-%m-%dT%H:%M:%S"))
    return f"{_second_cache[1]}.{int((record.created - second) * 1000):03d}Z"


_NEEDS_QUOTES = re.compile(r'[\s="\\]')


def _logfmt_value(value: Any) -> str:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    text = (
        value
        if isinstance(value, str)
        else json.dumps(value, default=str)
        if isinstance(value, dict | list)
        else str(value)
    )
    if text == "" or _NEEDS_QUOTES.search(text):
        return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'
    return text


def _level(record: logging.LogRecord) -> str:
    return {"WARNING": "warning", "CRITICAL": "fatal"}.get(record.levelname, record.levelname.lower())


class _FormatOnce(logging.Formatter):
    """Formats a record once for every handler sharing this formatter (stderr and the ring, which
    the logging thread calls one after the other): the last line of each thread is kept."""

    def __init__(self) -> None:
        super().__init__()
        self._last = threading.local()

    def format(self, record: logging.LogRecord) -> str:
        last = getattr(self._last, "line", None)
        if last is not None and last[0] is record:
            return last[1]
        text = self.render(record)
        self._last.line = (record, text)
        return text

    def render(self, record: logging.LogRecord) -> str:
        raise NotImplementedError


class LogfmtFormatter(_FormatOnce):
    def render(self, record: logging.LogRecord) -> str:
        parts = [f'time="{_time(record)}"', f"level={_level(record)}", f"msg={_logfmt_value(record.getMessage())}"]
        parts.extend(f"{k}={_logfmt_value(v)}" for k, v in _fields(record).items())
        if record.name != "okura.access":
            parts.append(f"logger={record.name}")
        if record.exc_info:
            parts.append(f"error={_logfmt_value(self.formatException(record.exc_info))}")
        return " ".join(parts)


class JSONFormatter(_FormatOnce):
    def render(self, record: logging.LogRecord) -> str:
        data: dict[str, Any] = {
            "time": _time(record),
            "level": _level(record),
            "msg": record.getMessage(),
            "logger": record.name,
        }
        data.update(_fields(record))
        if record.exc_info:
            data["error"] = self.formatException(record.exc_info)
        return json.dumps(data, default=str)


class _QuietInvalidRequests(logging.Filter):
    """Clients probe the plain-HTTP port with a TLS ClientHello before every request;
    uvicorn warns about each one. They are expected: log them at debug level."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.getMessage().startswith("Invalid HTTP request"):
            record.levelno, record.levelname = logging.DEBUG, "DEBUG"
            return logging.getLogger("okura").isEnabledFor(logging.DEBUG)
        return True


# -- the ring of recent lines ---------------------------------------------------------------------

DEFAULT_RING_LINES = 10000


class LogLine(NamedTuple):
    seq: int  # 1, 2, ... in the order lines were logged in this process
    time_ns: int  # when it was logged, in nanoseconds since the epoch (microsecond precision)
    text: str  # the formatted line, as written to stderr


class LogRing(logging.Handler):
    """The last `capacity` formatted lines of this process. Records come from any thread; async
    readers wait for new lines without blocking them (a lock, and call_soon_threadsafe to wake
    each waiter's event loop)."""

    def __init__(self, capacity: int = DEFAULT_RING_LINES) -> None:
        super().__init__()
        self._mutex = threading.Lock()
        self._lines: deque[LogLine] = deque(maxlen=max(capacity, 0))
        self._seq = 0
        self._waiters: set[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = set()

    @property
    def capacity(self) -> int:
        return self._lines.maxlen or 0

    @property
    def last_seq(self) -> int:
        return self._seq

    def resize(self, capacity: int) -> None:
        with self._mutex:
            self._lines = deque(self._lines, maxlen=max(capacity, 0))

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = self.format(record)
        except Exception:
            self.handleError(record)
            return
        time_ns = round(record.created * 1_000_000) * 1000  # a float holds microseconds, not nanoseconds
        with self._mutex:
            self._seq += 1
            self._lines.append(LogLine(self._seq, time_ns, text))
            waiters = list(self._waiters)
        for loop, future in waiters:
            with contextlib.suppress(RuntimeError):  # that loop has closed
                loop.call_soon_threadsafe(_wake, future)

    def lines(self, since_ns: int | None = None, tail: int | None = None) -> list[LogLine]:
        """The lines logged at or after `since_ns`, the last `tail` of them."""
        return self.snapshot(since_ns, tail)[0]

    def snapshot(self, since_ns: int | None = None, tail: int | None = None) -> tuple[list[LogLine], int]:
        """lines(), and the last line's `seq` then: a follower continues after it."""
        with self._mutex:
            found, seq = list(self._lines), self._seq
        if since_ns is not None:
            found = [line for line in found if line.time_ns >= since_ns]
        if tail is not None:
            found = found[-tail:] if tail > 0 else []
        return found, seq

    def after(self, seq: int) -> list[LogLine]:
        """The lines logged after line `seq` (those still held)."""
        with self._mutex:
            if self._seq <= seq:
                return []
            return [line for line in self._lines if line.seq > seq]

    async def wait(self, seq: int, timeout: float) -> bool:
        """Wait up to `timeout` seconds for a line after `seq`; whether there is one."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        entry = (loop, future)
        with self._mutex:
            if self._seq > seq:
                return True
            self._waiters.add(entry)
        try:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):  # not wait_for: see ChangeWaiter.wait
                    await future
        finally:
            with self._mutex:
                self._waiters.discard(entry)
        return self._seq > seq


def _wake(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


_ring: LogRing | None = None


def log_ring() -> LogRing | None:
    """This process's ring of recent lines, once setup_logging installed it."""
    return _ring


def size_log_ring(lines: int) -> None:
    """Hold at most `lines` lines (log.ring_lines), keeping the newest."""
    if _ring is not None and _ring.capacity != max(lines, 0):
        _ring.resize(lines)


def setup_logging(level: str = "info", fmt: str = "logfmt", ring_lines: int = DEFAULT_RING_LINES) -> None:
    global _ring
    formatter = JSONFormatter() if fmt == "json" else LogfmtFormatter()
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter)
    if _ring is None:
        _ring = LogRing(ring_lines)
    else:  # set up again (a worker process): keep the lines so far
        size_log_ring(ring_lines)
    _ring.setFormatter(formatter)  # the same line as on stderr
    root = logging.getLogger()
    root.handlers[:] = [handler, _ring]
    root.setLevel(python_level(level))
    for name in ("uvicorn", "uvicorn.error"):
        lg = logging.getLogger(name)
        lg.handlers[:] = []
        lg.propagate = True
    logging.getLogger("uvicorn.error").addFilter(_QuietInvalidRequests())
    logging.getLogger("uvicorn.access").disabled = True  # we write our own access line
    logging.getLogger("sqlalchemy").setLevel(logging.WARNING)
    logging.getLogger("alembic").setLevel(logging.WARNING)


def python_level(level: str) -> str:
    return {"warn": "WARNING"}.get(level.lower(), level.upper())


def apply_log_level(spec_level: str, configured: str) -> None:
    """Set the level live from the Config resource's logLevel: Normal is the config file's
    log.level; Debug, Trace and TraceAll log at debug (TraceAll also the HTTP client and the
    server internals). SQL is never logged: its parameters hold token hashes and sealed secrets."""
    root = logging.getLogger()
    root.setLevel(python_level(configured) if spec_level == "Normal" else "DEBUG")
    noisy = "DEBUG" if spec_level == "TraceAll" else "WARNING"
    for name in ("httpx", "httpcore", "botocore", "boto3", "urllib3"):
        logging.getLogger(name).setLevel(noisy)
