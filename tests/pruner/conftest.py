"""Fixtures for the pruner tests: SQLite and PostgreSQL (blob storage plays no part in the
resource and the scheduling), a movable clock and an injectable prune function."""

from __future__ import annotations

import pytest

from tests.auth.conftest import (  # noqa: F401 - fixtures shared with the auth tests
    cheap_password_hashes,
    connect,
)
from tests.support.clock import START, FakeClock
from tests.support.pruner import FakePrune


@pytest.fixture(params=["sqlite", "postgres"])
def backend(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def clock(monkeypatch) -> FakeClock:
    """The registry's clock, frozen at START until a test moves it."""
    fake = FakeClock(START)
    monkeypatch.setattr("registry.clock.now", fake)
    return fake


@pytest.fixture
def fake_prune() -> FakePrune:
    return FakePrune()
