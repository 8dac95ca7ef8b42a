"""Fixtures for the pruning tests: clocks the test moves, and a prune function to inject.

`backend` is SQLite and PostgreSQL only here: blob storage plays no part in the image pruner's
resource, API, CLI and schedule (test_api, test_cli, test_resource, test_schedule). The prune
tests themselves (test_prune_images) ask for every backend."""

from __future__ import annotations

import pytest

from tests.auth.conftest import cheap_password_hashes  # noqa: F401 - a fixture shared with the auth tests
from tests.support.backends import SQL_BACKENDS
from tests.support.clock import START, FakeClock
from tests.support.pruner import FakePrune


@pytest.fixture(params=SQL_BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    """SQLite and PostgreSQL only (test_prune_images asks for every backend)."""
    return request.param


@pytest.fixture
def clock(monkeypatch) -> FakeClock:
    """The registry's clock, frozen at START until a test moves it."""
    fake = FakeClock(START)
    monkeypatch.setattr("registry.clock.now", fake)
    return fake


@pytest.fixture
def fake_clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    """The registry's clock, starting at the real time, moved only by the test."""
    fake = FakeClock()
    monkeypatch.setattr("registry.clock.now", fake)
    return fake


@pytest.fixture
def fake_prune() -> FakePrune:
    return FakePrune()
