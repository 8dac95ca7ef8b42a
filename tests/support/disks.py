"""A small tmpfs mounted for a test: a disk that can be filled."""

from __future__ import annotations

import contextlib
import os
import subprocess
from pathlib import Path

import pytest

from tests.support.blobs import MiB


class Tmpfs:
    """A small tmpfs mounted for a test: a disk that can be filled. Needs root."""

    def __init__(self, path: Path, size: str):
        self.path = Path(path)
        self.size = size

    def mount(self) -> Tmpfs:
        self.path.mkdir(parents=True, exist_ok=True)
        result = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={self.size}", "tmpfs", str(self.path)], capture_output=True, text=True
        )
        if result.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here: {result.stderr.strip()}")
        return self

    def fill(self) -> Path:
        """Take every free byte with a filler file; returns it (delete it to free the disk)."""
        filler = self.path / "filler"
        fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            for size in (MiB, 65536, 4096, 512, 1):
                block = b"\0" * size
                with contextlib.suppress(OSError):
                    while True:
                        os.write(fd, block)
        finally:
            os.close(fd)
        return filler

    def used_by(self, sub: str) -> int:
        """Bytes allocated under a subdirectory."""
        total = 0
        for p in (self.path / sub).rglob("*"):
            with contextlib.suppress(FileNotFoundError):
                if p.is_file():
                    total += p.stat().st_blocks * 512
        return total

    def unmount(self) -> None:
        subprocess.run(["umount", "-l", str(self.path)], capture_output=True)
