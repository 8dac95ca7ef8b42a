"""Blobs for tests that need big ones."""

from __future__ import annotations

import hashlib
import random
from collections.abc import Iterator

MiB = 1 << 20


class PatternBlob:
    """A large blob generated block by block: never held in memory, digest known as it streams."""

    def __init__(self, size: int, seed: int, block: int = MiB):
        self.size = size
        self.block = block
        self._base = random.Random(seed).randbytes(block)

    def blocks(self, start: int = 0, end: int | None = None) -> Iterator[bytes]:
        """Bytes [start, end) in pieces of at most one block."""
        end = self.size if end is None else end
        pos = start
        while pos < end:
            index, within = divmod(pos, self.block)
            block = index.to_bytes(8, "little") + self._base[8:]
            piece = block[within : within + min(self.block - within, end - pos)]
            yield piece
            pos += len(piece)

    def digest(self) -> str:
        h = hashlib.sha256()
        for piece in self.blocks():
            h.update(piece)
        return "sha256:" + h.hexdigest()
