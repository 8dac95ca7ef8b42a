"""The ASGI zero-copy extensions, `http.response.zerocopysend` and `http.response.pathsend`,
on uvicorn's HTTP/1.1 connections: the kernel sends file bytes straight to the socket.

ASGI has no sendfile and uvicorn does not offer these extensions, while CNCF distribution
serves blobs with sendfile(2): copying through Python cost ~0.6 ms of CPU per MiB here,
sendfile almost none. The protocol offers them on plain-HTTP connections only (TLS needs
the bytes in user space).

A response's bytes must only ever reach the connection that asked for them. sendfile
blocks a worker thread while the client reads, and the client may vanish meanwhile; the
event loop then closes the socket and the kernel may hand its descriptor number to the
next connection. So the thread never writes to the transport's descriptor: it writes to a
duplicate taken on the event loop while the transport was open, which keeps that very
socket alive, whatever number the transport's own descriptor gets reused as.
"""

from __future__ import annotations

import asyncio
import os
import select
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

ZEROCOPYSEND = "http.response.zerocopysend"
PATHSEND = "http.response.pathsend"
# Okura's own: end a started response by dropping the connection, the one honest way to tell a
# client that a body it already has the headers of will not be complete (a pull-through
# upstream that failed mid-blob). uvicorn then treats the request as a client disconnect.
ABORT = "okura.http.response.abort"
STALL_SECONDS = 120.0  # a client that reads nothing for this long is dropped

# Transfers block a thread in poll() while the socket is full; keep them off the default
# executor so slow clients never starve file and hash work.
_senders = ThreadPoolExecutor(max_workers=256, thread_name_prefix="okura-sendfile")


def _sendfile_all(sock_fd: int, file_fd: int, offset: int, count: int) -> None:
    poller = select.poll()
    poller.register(sock_fd, select.POLLOUT)
    while count:
        try:
            sent = os.sendfile(sock_fd, file_fd, offset, min(count, 1 << 30))
        except BlockingIOError:
            if not poller.poll(STALL_SECONDS * 1000):
                raise TimeoutError("client stopped reading") from None
            continue
        if sent == 0:
            raise BrokenPipeError("file ended before the expected length")
        offset += sent
        count -= sent


class ZeroCopyApp:
    """Wraps the app for one request on one uvicorn request-response cycle: offers the
    extensions in the scope and carries out their messages on that cycle's connection."""

    __slots__ = ("app", "cycle", "files")

    def __init__(self, app: ASGIApp, cycle: Any, files: bool = True):
        self.app = app
        self.cycle = cycle
        self.files = files  # offer the file extensions (plain TCP only: not through TLS)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        offered = {ZEROCOPYSEND: {}, PATHSEND: {}, ABORT: {}} if self.files else {ABORT: {}}
        scope["extensions"] = {**(scope.get("extensions") or {}), **offered}

        async def send_with_files(message: Message) -> None:
            kind = message["type"]
            if kind == ZEROCOPYSEND:
                fd = message["file"].fileno()
                offset = message.get("offset")
                if offset is None:
                    offset = os.lseek(fd, 0, os.SEEK_CUR)
                count = message.get("count")
                if count is None:
                    count = os.fstat(fd).st_size - offset
                await self._send_file(fd, offset, count)
                if not message.get("more_body", False):
                    await send({"type": "http.response.body", "body": b"", "more_body": False})
            elif kind == PATHSEND:
                fd = await asyncio.get_running_loop().run_in_executor(None, os.open, message["path"], os.O_RDONLY)
                try:
                    await self._send_file(fd, 0, os.fstat(fd).st_size)
                finally:
                    os.close(fd)
                await send({"type": "http.response.body", "body": b"", "more_body": False})
            elif kind == ABORT:
                self.cycle.disconnected = True
                self.cycle.keep_alive = False
                self.cycle.transport.close()
            else:
                await send(message)

        await self.app(scope, receive, send_with_files)

    async def _send_file(self, file_fd: int, offset: int, count: int) -> None:
        cycle = self.cycle
        if not cycle.response_started or cycle.response_complete:
            raise RuntimeError("a file body needs a started, unfinished response")
        if cycle.scope["method"] == "HEAD" or cycle.disconnected or not count:
            return
        if count > cycle.expected_content_length:
            raise RuntimeError("Response content longer than Content-Length")
        transport = cycle.transport
        while transport.get_write_buffer_size() and not transport.is_closing():
            await asyncio.sleep(0.0005)  # the headers go out first, through the transport
        if transport.is_closing():
            return
        # No await since is_closing(): the descriptor is still this connection's.
        connection = os.dup(transport.get_extra_info("socket").fileno())
        try:
            loop = asyncio.get_running_loop()
            await loop.run_in_executor(_senders, _sendfile_all, connection, file_fd, offset, count)
        except OSError:
            # The client went away mid-body (or stalled): the connection cannot carry
            # another response. Close it; the response then ends quietly.
            transport.close()
            cycle.disconnected = True
        finally:
            os.close(connection)
        cycle.expected_content_length -= count
