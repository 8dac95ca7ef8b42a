from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Mapping

from starlette.requests import ClientDisconnect
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from registry.errors import RegistryError
from storage.base import StorageError

log = logging.getLogger("okura.blobs")

ABORT = "okura.http.response.abort"  # registry/server/zerocopy.py offers it


class StreamedBody(Response):
    """Streams an async iterator without Starlette's per-response disconnect watcher
    task (a measurable cost at thousands of small blob GETs a second). A vanished
    client surfaces as an OSError from `send`, which ends the stream."""

    def __init__(
        self,
        body: AsyncIterator[bytes] | None,
        status_code: int,
        headers: Mapping[str, str],
        media_type: str = "application/octet-stream",
    ):
        self.body_iterator = body
        self.status_code = status_code
        self.media_type = media_type
        self.background = None
        self.init_headers(headers)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers})
        if self.body_iterator is None:
            await send({"type": "http.response.body", "body": b"", "more_body": False})
            return
        try:
            async for chunk in self.body_iterator:
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        except OSError:
            raise ClientDisconnect() from None
        except (RegistryError, StorageError) as e:
            # The body failed after its headers went out: drop the connection, so the client
            # sees a short body, not a whole one. (A storage failure is logged here, once.)
            if ABORT not in (scope.get("extensions") or {}):
                raise
            if isinstance(e, StorageError):
                log.warning("blob body cut short: %s", str(e)[:300] or type(e).__name__)
            await send({"type": ABORT})
        finally:
            await self.body_iterator.aclose()  # type: ignore[attr-defined]


def empty(status: int, headers: Mapping[str, str]) -> Response:
    return Response(status_code=status, headers={**headers, "Content-Length": "0"})
