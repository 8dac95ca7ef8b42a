"""A bounded in-process cache of metadata lookups, kept coherent across worker
processes by a shared generation counter.

Entries are tagged with the generation read *before* the database was queried.
Every change that can make a cached answer wrong (a tag moving, a delete) bumps
the generation after its commit, which retires every older entry at once. The
counter lives in a memory-mapped file in the data directory, so a read costs no
system call and all workers of one host see each bump immediately.
"""

from __future__ import annotations

import fcntl
import mmap
import os
import struct
from collections import OrderedDict
from typing import Any

_COUNTER = struct.Struct("<Q")


class Generation:
    def __init__(self, path: str | None = None):
        self._local = 0
        self._mm: mmap.mmap | None = None
        self._fd = -1
        if path:
            os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
            self._fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
            if os.fstat(self._fd).st_size < _COUNTER.size:
                os.ftruncate(self._fd, _COUNTER.size)
            self._mm = mmap.mmap(self._fd, _COUNTER.size)

    def current(self) -> int:
        if self._mm is None:
            return self._local
        return _COUNTER.unpack_from(self._mm, 0)[0]

    def bump(self) -> None:
        if self._mm is None:
            self._local += 1
            return
        fcntl.flock(self._fd, fcntl.LOCK_EX)
        try:
            _COUNTER.pack_into(self._mm, 0, _COUNTER.unpack_from(self._mm, 0)[0] + 1)
        finally:
            fcntl.flock(self._fd, fcntl.LOCK_UN)

    def close(self) -> None:
        if self._mm is not None:
            self._mm.close()
            os.close(self._fd)
            self._mm = None


class MetadataCache:
    def __init__(self, generation: Generation, max_bytes: int):
        self.generation = generation
        self.max_bytes = max_bytes
        self._entries: OrderedDict[Any, tuple[int, Any, int]] = OrderedDict()
        self._bytes = 0
        self.hits = 0
        self.misses = 0

    def get(self, key: Any) -> Any | None:
        entry = self._entries.get(key)
        if entry is not None and entry[0] == self.generation.current():
            self.hits += 1
            return entry[1]
        self.misses += 1
        return None

    def put(self, key: Any, value: Any, generation: int, size: int = 64) -> None:
        if size > self.max_bytes // 4:
            return
        old = self._entries.pop(key, None)
        if old is not None:
            self._bytes -= old[2]
        self._entries[key] = (generation, value, size)
        self._bytes += size
        while self._bytes > self.max_bytes and self._entries:
            _, (_, _, dropped) = self._entries.popitem(last=False)
            self._bytes -= dropped

    def invalidate(self) -> None:
        """Retire every cached entry in every worker sharing the generation."""
        self.generation.bump()
