"""uvicorn's httptools protocol with limits on what a client may make the server hold.

httptools buffers a header until it is complete, and uvicorn waits forever for a
request's headers, so one client could grow the server without bound (ten connections
each sending a 20 MB unfinished header cost 240 MB) or hold connections open doing
nothing. Here:

- the request line and headers may take `max_header_bytes` and `max_headers` (431
  Request Header Fields Too Large, then the connection closes);
- they must arrive within `header_timeout` of the connection opening or of the request's
  first byte (408 Request Timeout if anything arrived, then the connection closes); idle
  keep-alive connections are closed by uvicorn's `timeout_keep_alive`;
- on plain-HTTP connections the app is offered zero-copy file bodies (zerocopy.py).
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from registry.server.options import HttpLimits
from registry.server.zerocopy import ZeroCopyApp

REJECTED = "okura.rejected"  # scope key: the status a request gets instead of the app


def _error_response(status: int, reason: str, message: str) -> bytes:
    # The OCI error envelope: what a registry client understands under /v2/.
    code = "TOOMANYREQUESTS" if status == 429 else "UNSUPPORTED"
    body = json.dumps({"errors": [{"code": code, "message": message, "detail": None}]}).encode()
    head = (
        f"HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\n"
        f"content-length: {len(body)}\r\nconnection: close\r\n\r\n"
    )
    return head.encode() + body


async def _headers_too_large(scope: Any, receive: Any, send: Any) -> None:
    message = b'{"errors":[{"code":"UNSUPPORTED","message":"request headers too large","detail":null}]}'
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(message)).encode())]
    await send({"type": "http.response.start", "status": 431, "headers": [*headers, (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": message})


class RegistryHttpProtocol(HttpToolsProtocol):
    def __init__(self, config: Any, server_state: Any, app_state: dict[str, Any], _loop: Any = None) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self.limits: HttpLimits = getattr(config, "limits", None) or HttpLimits()
        self._awaiting_headers = True  # bytes arriving now belong to a request's head
        self._head_bytes = 0  # bytes received since the current head began (approximate)
        self._header_bytes = 0  # exact size of the completed parts of the current head
        self._header_timer: asyncio.TimerHandle | None = None
        self._zero_copy = False

    # -- connection ------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._zero_copy = (
            self.limits.zero_copy and self.scheme == "http" and transport.get_extra_info("socket") is not None
        )
        self._start_header_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_header_timer()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._awaiting_headers:
            self._head_bytes += len(data)
        super().data_received(data)
        if self._awaiting_headers and self.parser is not None and not self.transport.is_closing():
            # Still inside a head after this chunk: httptools holds it all in memory.
            if self._head_bytes > self.limits.max_header_bytes or self._header_bytes > self.limits.max_header_bytes:
                self._refuse(431, "Request Header Fields Too Large", "request headers too large")
            elif self.headers is not None and len(self.headers) > self.limits.max_headers:
                self._refuse(431, "Request Header Fields Too Large", "too many request headers")

    def _refuse(self, status: int, reason: str, message: str) -> None:
        self._cancel_header_timer()
        self.transport.write(_error_response(status, reason, message))
        self.transport.close()

    # -- parser callbacks ------------------------------------------------------------------

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._header_bytes = 0
        if self._header_timer is None:
            self._start_header_timer()

    def on_url(self, url: bytes) -> None:
        super().on_url(url)
        self._header_bytes += len(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        super().on_header(name, value)
        self._header_bytes += len(name) + len(value) + 4

    def on_headers_complete(self) -> None:
        self._awaiting_headers = False
        self._cancel_header_timer()
        if self._header_bytes > self.limits.max_header_bytes or len(self.headers) > self.limits.max_headers:
            self.scope[REJECTED] = 431  # type: ignore[typeddict-unknown-key]
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._awaiting_headers = True
        self._head_bytes = 0

    def _start_asgi_task(self, cycle: Any, app: Any) -> None:
        if cycle.scope.get(REJECTED) == 431:
            super()._start_asgi_task(cycle, _headers_too_large)
            return
        # The abort extension always; the file ones where sendfile(2) can be used.
        super()._start_asgi_task(cycle, ZeroCopyApp(app, cycle, files=self._zero_copy))

    # -- the header timeout ----------------------------------------------------------------

    def _start_header_timer(self) -> None:
        self._cancel_header_timer()
        self._header_timer = self.loop.call_later(self.limits.header_timeout, self._header_timeout)

    def _cancel_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _header_timeout(self) -> None:
        self._header_timer = None
        if self.transport.is_closing() or not self._awaiting_headers:
            return
        if self._head_bytes:
            self._refuse(408, "Request Timeout", "request headers not received in time")
        else:
            self.transport.close()  # connected and said nothing
