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
- a request body may not stall for `body_idle_timeout`: the app's receive() then gets
  http.disconnect (an upload keeps what earlier requests stored and can be resumed), and
  the client gets 408 if the app had not started answering, then the connection closes.
  Only time while the server is reading counts: when the app stops reading (busy writing
  to storage) uvicorn pauses the socket, and that backpressure is not the client's stall;
- at most `max_connections` connections per process: beyond that a new connection is
  answered 503 (Retry-After: 1) at once, before it has sent a byte, and closed.
  (uvicorn's `limit_concurrency` answers only once a request's headers are complete, which
  a slow client never gets to, and counts the refused connections themselves.)
- on plain-HTTP connections the app is offered zero-copy file bodies (zerocopy.py).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

from uvicorn.protocols.http.flow_control import FlowControl
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from registry.server.options import HttpLimits
from registry.server.zerocopy import ZeroCopyApp

REJECTED = "okura.rejected"  # scope key: the status a request gets instead of the app
REFUSED_LINGER = 1.0  # seconds a refused connection waits for the client to close first
_ERROR_CODES = {429: "TOOMANYREQUESTS", 503: "UNAVAILABLE"}


def _error_response(status: int, reason: str, message: str, headers: dict[str, str] | None = None) -> bytes:
    # The OCI error envelope: what a registry client understands under /v2/.
    code = _ERROR_CODES.get(status, "UNSUPPORTED")
    body = json.dumps({"errors": [{"code": code, "message": message, "detail": None}]}).encode()
    extra = "".join(f"{name}: {value}\r\n" for name, value in (headers or {}).items())
    head = (
        f"HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\n"
        f"content-length: {len(body)}\r\n{extra}connection: close\r\n\r\n"
    )
    return head.encode() + body


class _ReadFlow(FlowControl):
    """uvicorn's flow control, telling the protocol when reading resumes: while it was
    paused the server, not the client, held the request body back."""

    def __init__(self, transport: asyncio.Transport, on_resume: Callable[[], None]) -> None:
        super().__init__(transport)
        self._on_resume = on_resume

    def resume_reading(self) -> None:
        paused = self.read_paused
        super().resume_reading()
        if paused:
            self._on_resume()


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
        self._reading_body = False  # between a request's headers and the end of its body
        self._body_activity = 0.0  # loop time of the body's last progress (or of reading resuming)
        self._body_timer: asyncio.TimerHandle | None = None
        self._refused: asyncio.TimerHandle | None = None  # over max_connections: closing
        self._zero_copy = False

    # -- connection ------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)  # counts it in server_state.connections
        if 0 < self.limits.max_connections < len(self.connections):
            self._refuse_connection()
            return
        self.flow = _ReadFlow(transport, self._body_reading_resumed)
        self._zero_copy = (
            self.limits.zero_copy and self.scheme == "http" and transport.get_extra_info("socket") is not None
        )
        self._start_header_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_header_timer()
        self._cancel_body_timer()
        if self._refused is not None:
            self._refused.cancel()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._refused is not None:
            return  # answered already; what the client sent is dropped
        if self._awaiting_headers:
            self._head_bytes += len(data)
        super().data_received(data)
        if self._reading_body:
            self._body_progressed()
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

    def _refuse_connection(self) -> None:
        # A refused connection holds no place: the count is of the connections being served.
        self.connections.discard(self)
        message = "the server has too many connections; try again"
        self.transport.write(_error_response(503, "Service Unavailable", message, {"retry-after": "1"}))
        if not self.transport.can_write_eof():  # TLS
            self.transport.close()
            return
        # Closing with the client's request unread would reset the connection, and a reset
        # can destroy the answer before the client reads it; so end our side, drop what
        # arrives and close when the client does (eof_received), or after a short while.
        self.transport.write_eof()
        self._refused = self.loop.call_later(REFUSED_LINGER, self.transport.close)

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
        # A request without a body completes within this same parse, and no timer is armed.
        self._reading_body = True

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._awaiting_headers = True
        self._head_bytes = 0
        self._reading_body = False
        self._cancel_body_timer()
        if self.cycle is not None and self.cycle.response_complete:
            # Answered before the body ended (a 401 to an upload): uvicorn armed its
            # keep-alive timer then, and the rest of the body cancelled it.
            self._arm_keep_alive()

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

    def _arm_keep_alive(self) -> None:
        if self.timeout_keep_alive_task is None and not self.transport.is_closing():
            self.timeout_keep_alive_task = self.loop.call_later(
                self.timeout_keep_alive, self.timeout_keep_alive_handler
            )

    # -- the body idle timeout -------------------------------------------------------------
    # One timer per connection, armed while a body is being read. Progress only records the
    # time (no timer churn per chunk); when the timer fires early it re-arms for the rest.

    def _body_progressed(self) -> None:
        self._body_activity = self.loop.time()
        if self._body_timer is None and not self.flow.read_paused and not self.transport.is_closing():
            self._arm_body_timer(self.limits.body_idle_timeout)

    def _body_reading_resumed(self) -> None:
        # Time spent paused was the server's; the client's clock starts again now.
        if self._reading_body:
            self._body_progressed()

    def _arm_body_timer(self, delay: float) -> None:
        self._body_timer = self.loop.call_later(delay, self._body_idle)

    def _cancel_body_timer(self) -> None:
        if self._body_timer is not None:
            self._body_timer.cancel()
            self._body_timer = None

    def _body_idle(self) -> None:
        self._body_timer = None
        if not self._reading_body or self.transport.is_closing() or self.flow.read_paused:
            return  # done, gone, or the server holds the body back (resuming re-arms)
        now = self.loop.time()
        if self.cycle is not None and self.cycle.waiting_for_100_continue:
            self._body_activity = now  # the client waits for our 100 Continue, not we for it
        idle = now - self._body_activity
        if idle < self.limits.body_idle_timeout:
            self._arm_body_timer(self.limits.body_idle_timeout - idle)
        else:
            self._body_stalled()

    def _body_stalled(self) -> None:
        cycle = self.cycle
        answer = cycle is not None and not cycle.response_started
        if cycle is not None:
            # receive() now returns http.disconnect and whatever the app sends is dropped,
            # as when the client goes away: the upload handler stops and keeps what it had.
            if not cycle.response_complete:
                cycle.disconnected = True
            cycle.message_event.set()
        self._reading_body = False
        if answer:
            self.transport.write(_error_response(408, "Request Timeout", "request body stalled"))
        self.transport.close()
