"""The session's shared S3 server (SeaweedFS), used by the storage driver suite, the protocol
suite run on an S3-backed registry and the end-to-end registries on S3 storage.

The server boots in a background thread as soon as collection shows a test that needs it
(start_shared_seaweedfs, from a pytest hook), so its few seconds of startup overlap with the
tests that run before; shared_seaweedfs() waits for it, and stop_shared_seaweedfs() stops it
when the session ends."""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
from typing import Any

import pytest

from tests.support.seaweedfs import MISSING_WEED, SeaweedFS, find_weed

S3_BUCKET = "okura-test"  # tests isolate themselves with a root_prefix each
S3_ROOT_BUCKET = "okura-root"  # for tests of a driver at the bucket root
REPLICAS_BUCKET = "okura-replicas"  # the replica tests' bucket, on a SeaweedFS of their own

_boot: dict[str, Any] = {}
_boot_lock = threading.Lock()


def start_shared_seaweedfs() -> None:
    """Start booting the shared server in the background (once a session)."""
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


def needs_seaweedfs(item: Any) -> bool:
    """Uses the fixture, or is an end-to-end test on S3 storage (whose registry asks for it)."""
    if "seaweedfs" in getattr(item, "fixturenames", ()):
        return True
    params = getattr(getattr(item, "callspec", None), "params", {})
    return str(params.get("storage", "")).startswith("s3")


def shared_seaweedfs() -> SeaweedFS:
    """The shared server once it is up (started now if it was not): a test fails when the weed
    binary is missing, unless OKURA_TEST_SKIP_S3=1 (then it is skipped)."""
    start_shared_seaweedfs()
    if _boot.get("missing"):
        if os.environ.get("OKURA_TEST_SKIP_S3") == "1":
            pytest.skip("no weed binary and OKURA_TEST_SKIP_S3=1")
        pytest.fail(MISSING_WEED, pytrace=False)
    _boot["thread"].join(120)
    if "error" in _boot:
        raise RuntimeError(f"SeaweedFS did not start: {_boot['error']}")
    if _boot["thread"].is_alive():
        raise RuntimeError("SeaweedFS did not start within 120s")
    return _boot["server"]


def stop_shared_seaweedfs() -> None:
    with _boot_lock:
        server = _boot.get("server")
        thread = _boot.get("thread")
        _boot.clear()
    if server is not None:
        server.stop()
        if thread is not None:
            thread.join(10)
        shutil.rmtree(server.data_dir, ignore_errors=True)
