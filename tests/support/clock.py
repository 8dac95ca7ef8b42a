"""Clocks a test moves: in-process (FakeClock, patched over registry.clock.now) or in a server
process and the `okura` CLI (MovableClock, through OKURA_TEST_CLOCK_FILE)."""

from __future__ import annotations

import os
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

START = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)  # where a frozen FakeClock starts


class FakeClock:
    """Stands in for registry.clock.now: answers `current`, which only the test moves. Starts at
    `start`, or at the real time (storage stamps files with it: orphans' age)."""

    def __init__(self, start: datetime | None = None):
        self.current = start if start is not None else datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.current

    def set(self, when: datetime) -> datetime:
        self.current = when
        return when

    def advance(self, **delta: float) -> datetime:
        self.current += timedelta(**delta)
        return self.current


class MovableClock:
    """The offset in seconds, in the file OKURA_TEST_CLOCK_FILE names, that the server and the
    CLI add to the real time."""

    def __init__(self, path: Path):
        self.path = path
        self.offset = float(path.read_text() or 0)

    def advance(self, seconds: float) -> None:
        self.offset += seconds
        self.path.write_text(str(self.offset))
        os.utime(self.path, (time.time() + self.offset, time.time() + self.offset))  # a new mtime
