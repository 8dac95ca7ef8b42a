"""Fixtures starting real `okura serve` processes (ports from tests/support/ports.py, temporary data dirs)."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from tests.support.disks import Tmpfs
from tests.support.servers import OkuraServer


@pytest.fixture
def start_server(tmp_path) -> Iterator[Callable[..., OkuraServer]]:
    """Start servers: `start_server(workers=1, env=None, data_dir=None)`; all are killed after the test."""
    started: list[OkuraServer] = []

    def factory(workers: int = 1, env: dict[str, str] | None = None, data_dir=None) -> OkuraServer:
        name = f"data{len(started)}"
        server = OkuraServer(
            data_dir or tmp_path / name, workers=workers, env=env, log_path=tmp_path / f"{name}-server.log"
        )
        started.append(server)
        return server.start()

    yield factory
    for server in started:
        server.stop()


@pytest.fixture
def server(start_server) -> OkuraServer:
    """One single-worker server on a fresh data directory."""
    return start_server()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Attach the server logs to a failing test's report."""
    outcome = yield
    report = outcome.get_result()
    tmp_path = getattr(item, "funcargs", {}).get("tmp_path")
    if report.when == "call" and report.failed and tmp_path is not None:
        for path in sorted(tmp_path.glob("*-server.log")):
            report.sections.append((f"okura log {path.name}", path.read_text(errors="replace")[-20000:]))


@pytest.fixture
def tmpfs(tmp_path):
    """A 96 MiB tmpfs under the test's directory (skips where mounting is not allowed)."""
    disk = Tmpfs(tmp_path / "disk", "96m").mount()
    yield disk
    disk.unmount()
