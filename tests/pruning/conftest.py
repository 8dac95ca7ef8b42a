"""Fixtures for pruning tests: a clock the test moves, and storage accounting."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from registry import clock


class FakeClock:
    def __init__(self) -> None:
        # Starts at the real time: storage stamps files with it (orphans' age).
        self.current = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.current

    def advance(self, **delta: float) -> datetime:
        self.current += timedelta(**delta)
        return self.current


@pytest.fixture
def fake_clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    fake = FakeClock()
    monkeypatch.setattr(clock, "now", fake)
    return fake


async def stored_blobs(reg) -> dict[str, int]:
    """Digest -> size of every blob file in storage."""
    return {info.digest: info.size async for info in reg.storage.list_blobs()}
