"""The registry's clock. Everything that stamps or compares metadata times asks here,
so tests can move time: in-process by assigning `clock.now`, and in a server process
by pointing OKURA_TEST_CLOCK_FILE at a file holding an offset in seconds (re-read when
it changes)."""

from __future__ import annotations

import os
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

_OFFSET_FILE = os.environ.get("OKURA_TEST_CLOCK_FILE", "")
_cached: tuple[float, float] = (-1.0, 0.0)  # (file mtime, offset seconds)


def _offset() -> float:
    global _cached
    try:
        mtime = os.stat(_OFFSET_FILE).st_mtime
    except OSError:
        return 0.0
    if mtime != _cached[0]:
        try:
            with open(_OFFSET_FILE) as f:
                _cached = (mtime, float(f.read().strip() or 0))
        except (OSError, ValueError):
            return _cached[1]
    return _cached[1]


def _system_now() -> datetime:
    if _OFFSET_FILE:
        return datetime.now(UTC) + timedelta(seconds=_offset())
    return datetime.now(UTC)


now: Callable[[], datetime] = _system_now
