"""A bounded in-process cache of metadata lookups, kept coherent across worker
processes by shared generation counters.

Each entry is stamped with the counters read *before* the database was queried:
a global one and the one of the entry's repository (repositories hash onto a
fixed set of slots). A change that can make a cached answer wrong (a tag created,
moved or deleted, a manifest or blob link deleted) bumps its repository's counter
after its commit, retiring every older entry of that repository at once; changes
spanning repositories bump the global counter. The counters live in a
memory-mapped file in the data directory, so reading them costs no system call
and every worker of one host sees each bump immediately.
"""

from __future__ import annotations

import asyncio
import fcntl
import mmap
import os
import struct
import zlib
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Any

from registry import metrics

_COUNTER = struct.Struct("<Q")
SLOTS = 4096

Stamp = tuple[int, int]


def _slot(repo: str) -> int:
    return 1 + zlib.crc32(repo.encode()) % SLOTS


class Generation:
    def __init__(self, path: str | None = None):
        size = _COUNTER.size * (1 + SLOTS)
        self._fd = -1
        if path:
            os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
            self._fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
            try:
                # Every page allocated now: touching a hole of a sparse mapped file on a
                # full disk raises SIGBUS, which kills the process.
                os.posix_fallocate(self._fd, 0, size)
            except OSError as e:
                os.close(self._fd)
                raise OSError(e.errno, f"cannot allocate the cache counter file {path}: {e.strerror}") from None
            self._mm = mmap.mmap(self._fd, size)
        else:
            self._mm = mmap.mmap(-1, size)

    def _read(self, index: int) -> int:
        return _COUNTER.unpack_from(self._mm, index * _COUNTER.size)[0]

    def stamp(self, repo: str) -> Stamp:
        return self._read(0), self._read(_slot(repo))

    def bump(self, repo: str | None = None) -> None:
        index = 0 if repo is None else _slot(repo)
        if self._fd >= 0:
            fcntl.flock(self._fd, fcntl.LOCK_EX)
        try:
            _COUNTER.pack_into(self._mm, index * _COUNTER.size, self._read(index) + 1)
        finally:
            if self._fd >= 0:
                fcntl.flock(self._fd, fcntl.LOCK_UN)

    def close(self) -> None:
        self._mm.close()
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


class MetadataCache:
    def __init__(self, generation: Generation, max_bytes: int):
        self.generation = generation
        self.max_bytes = max_bytes
        self.feed: Any = None  # a ChangeFeed when replicas share a PostgreSQL database
        self._entries: OrderedDict[Any, tuple[Stamp, Any, int]] = OrderedDict()
        self._bytes = 0

    def stamp(self, repo: str) -> Stamp:
        """Read before querying the database; pass to `put`."""
        return self.generation.stamp(repo)

    def get(self, repo: str, key: Any) -> Any | None:
        if self.feed is not None and not self.feed.connected:
            return None  # other replicas' changes cannot reach us right now
        entry = self._entries.get((repo, key))
        if entry is not None and entry[0] == self.generation.stamp(repo):
            return entry[1]
        return None

    def put(self, repo: str, key: Any, value: Any, stamp: Stamp, size: int = 64) -> None:
        if size > self.max_bytes // 4:
            return
        full_key = (repo, key)
        old = self._entries.pop(full_key, None)
        if old is not None:
            self._bytes -= old[2]
        self._entries[full_key] = (stamp, value, size)
        self._bytes += size
        while self._bytes > self.max_bytes and self._entries:
            _, (_, _, dropped) = self._entries.popitem(last=False)
            self._bytes -= dropped

    def invalidate(self, repo: str | None = None) -> None:
        """Retire cached entries of one repository (or all) in every worker of this host."""
        self.generation.bump(repo)

    async def changed(self, repo: str | None = None) -> None:
        """After committing a change: retire cached entries here and on every replica."""
        self.generation.bump(repo)
        if self.feed is not None:
            await self.feed.publish(repo)


class BlobContentCache:
    """Whole small blobs in memory, for storage with no local file to send (S3). Blobs are
    content addressed and immutable, so an entry never goes stale; whether the caller may
    see the blob is still decided from the metadata on every request. Concurrent misses
    of one blob share a single read."""

    def __init__(self, max_bytes: int, max_blob: int):
        self.max_bytes = max_bytes
        self.max_blob = max_blob
        self._entries: OrderedDict[str, bytes] = OrderedDict()
        self._bytes = 0
        self._loading: dict[str, asyncio.Future[bytes]] = {}

    def holds(self, size: int) -> bool:
        """Whether a blob of this size is cached at all."""
        return 0 < size <= self.max_blob and self.max_bytes > 0

    async def get(self, digest: str, load: Callable[[], Awaitable[bytes]]) -> bytes:
        data = self._entries.get(digest)
        if data is not None:
            self._entries.move_to_end(digest)
            metrics.blob_cache_requests.labels("hit").inc()
            return data
        metrics.blob_cache_requests.labels("miss").inc()
        waiting = self._loading.get(digest)
        if waiting is not None:
            return await asyncio.shield(waiting)
        future: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self._loading[digest] = future
        try:
            data = await load()
        except BaseException as e:
            future.set_exception(e)
            future.exception()  # retrieved: no "never retrieved" warning without waiters
            raise
        finally:
            del self._loading[digest]
        future.set_result(data)
        self._entries[digest] = data
        self._bytes += len(data)
        while self._bytes > self.max_bytes and self._entries:
            _, dropped = self._entries.popitem(last=False)
            self._bytes -= len(dropped)
        return data
