"""A local file (or a byte range of it) as a response body.

When the server offers the ASGI zero-copy extensions (Okura's own protocol does on
plain-HTTP connections, see registry/server/zerocopy.py), the body goes out through
`http.response.zerocopysend` and the kernel sends the bytes; otherwise it is read in
chunks and sent through the ordinary `http.response.body` messages.
"""

from __future__ import annotations

import asyncio
import os

from starlette.requests import ClientDisconnect
from starlette.types import Receive, Scope, Send

from registry import metrics
from registry.errors import BlobUnknown
from storage.base import READ_CHUNK

ZEROCOPYSEND = "http.response.zerocopysend"


class FileBody:
    """An ASGI response for `length` bytes of a local file from `offset`."""

    def __init__(self, path: str, offset: int, length: int, status: int, headers: list[tuple[bytes, bytes]]):
        self.path = path
        self.offset = offset
        self.length = length
        self.status = status
        self.headers = headers

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        loop = asyncio.get_running_loop()
        try:
            fd = await loop.run_in_executor(None, os.open, self.path, os.O_RDONLY)
        except FileNotFoundError:
            raise BlobUnknown("blob is recorded but missing from storage") from None
        try:
            await send({"type": "http.response.start", "status": self.status, "headers": self.headers})
            if self.length and ZEROCOPYSEND in (scope.get("extensions") or {}):
                with os.fdopen(fd, "rb", buffering=0, closefd=False) as file:
                    await send({"type": ZEROCOPYSEND, "file": file, "offset": self.offset, "count": self.length})
                metrics.zero_copy_bytes.inc(self.length)
                return
            await self._copy(loop, send, fd)
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        finally:
            os.close(fd)

    async def _copy(self, loop: asyncio.AbstractEventLoop, send: Send, fd: int) -> None:
        offset, remaining = self.offset, self.length
        try:
            while remaining:
                chunk = await loop.run_in_executor(None, os.pread, fd, min(READ_CHUNK, remaining), offset)
                if not chunk:
                    raise BrokenPipeError("file ended before the expected length")
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
                offset += len(chunk)
                remaining -= len(chunk)
        except OSError:
            raise ClientDisconnect() from None
