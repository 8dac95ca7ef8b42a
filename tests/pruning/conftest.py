"""Fixtures for pruning tests: a clock the test moves."""

from __future__ import annotations

import pytest

from registry import clock
from tests.support.clock import FakeClock


@pytest.fixture
def fake_clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    fake = FakeClock()
    monkeypatch.setattr(clock, "now", fake)
    return fake
