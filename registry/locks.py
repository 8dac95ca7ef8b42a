"""Per-upload mutual exclusion across coroutines and worker processes.

Within a process an asyncio.Lock per upload; across processes sharing a data
directory, an flock on one of a fixed set of stripe files (lock files are never
deleted, so no process can end up locking an unlinked inode)."""

from __future__ import annotations

import asyncio
import fcntl
import os
import zlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from registry.model.context import Registry

STRIPES = 1024

_local: dict[str, tuple[asyncio.Lock, int]] = {}


def _stripe_path(data_dir: str, key: str) -> str:
    return os.path.join(data_dir, "locks", f"upload-{zlib.crc32(key.encode()) % STRIPES:04d}")


def _flock(path: str) -> int:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _unlock(fd: int) -> None:
    try:
        fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


async def _acquire(path: str) -> int:
    fut = asyncio.get_running_loop().run_in_executor(None, _flock, path)
    try:
        return await asyncio.shield(fut)
    except asyncio.CancelledError:
        # The thread may still get the lock after we gave up: release it then.
        fut.add_done_callback(lambda f: None if f.cancelled() or f.exception() else _unlock(f.result()))
        raise


@asynccontextmanager
async def upload_lock(reg: Registry, upload_id: str) -> AsyncIterator[None]:
    lock, users = _local.get(upload_id, (None, 0))
    if lock is None:
        lock = asyncio.Lock()
    _local[upload_id] = (lock, users + 1)
    try:
        async with lock:
            if reg.config.http.workers == 1:  # this process is the only one touching the data dir
                yield
                return
            fd = await _acquire(_stripe_path(reg.config.data_dir, upload_id))
            try:
                yield
            finally:
                _unlock(fd)
    finally:
        lock, users = _local[upload_id]
        if users <= 1:
            del _local[upload_id]
        else:
            _local[upload_id] = (lock, users - 1)
