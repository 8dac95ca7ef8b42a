"""The one place errors become responses: the OCI envelope, never a traceback."""

from __future__ import annotations

import json
import logging

from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response

from registry.errors import RegistryError, RouteUnknown, Unavailable, Unsupported
from storage.base import StorageUnavailable

log = logging.getLogger("okura.http")


def error_response(error: RegistryError, head: bool = False) -> Response:
    body = json.dumps({"errors": [error.to_json()]}).encode()
    headers = dict(error.headers)
    if head:  # HEAD answers carry no body, but say how long it would have been
        return Response(
            status_code=error.status,
            headers={**headers, "Content-Length": str(len(body))},
            media_type="application/json",
        )
    return Response(body, status_code=error.status, headers=headers, media_type="application/json")


async def handle_registry_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RegistryError)
    if exc.status >= 500:
        log.warning("request failed: %s", exc.message)
    return error_response(exc, head=request.method == "HEAD")


async def handle_http_exception(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    error: RegistryError
    if exc.status_code == 405:
        error = Unsupported(
            f"method {request.method} is not allowed on {request.url.path}", headers=dict(exc.headers or {})
        )
    elif exc.status_code == 404:
        error = RouteUnknown(f"no endpoint for {request.method} {request.url.path}")
    else:
        error = RegistryError(exc.detail)
        error.status = exc.status_code
        error.code = "UNSUPPORTED"
    return error_response(error, head=request.method == "HEAD")


async def handle_client_disconnect(request: Request, exc: Exception) -> Response:
    # The client is gone; nothing will read this answer.
    return Response(status_code=499)


async def handle_storage_unavailable(request: Request, exc: Exception) -> Response:
    log.warning("storage unavailable serving %s %s: %s", request.method, request.url.path, exc)
    return error_response(
        Unavailable(f"blob storage is unavailable, try again later: {str(exc)[:200]}", headers={"Retry-After": "5"}),
        head=request.method == "HEAD",
    )


async def handle_unexpected(request: Request, exc: Exception) -> Response:
    log.exception("unexpected error serving %s %s", request.method, request.url.path)
    return error_response(
        Unavailable("internal error; the request was not completed") if isinstance(exc, OSError) else _internal(),
        head=request.method == "HEAD",
    )


def _internal() -> RegistryError:
    error = RegistryError("internal server error")
    error.code = "UNKNOWN"
    return error


EXCEPTION_HANDLERS = {
    RegistryError: handle_registry_error,
    HTTPException: handle_http_exception,
    ClientDisconnect: handle_client_disconnect,
    StorageUnavailable: handle_storage_unavailable,
    Exception: handle_unexpected,
}
