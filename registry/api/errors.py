"""The one place errors become responses, never a traceback: the OCI envelope on /v2/ (and
everything else), a Kubernetes `Status` object under /apis/ (what oc and kubectl expect)."""

from __future__ import annotations

import json
import logging
import re
from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response

from registry.errors import (
    InsufficientStorage,
    RegistryError,
    ResourceError,
    RouteUnknown,
    Unavailable,
    Unsupported,
)
from storage.base import StorageError, StorageFull, StorageUnavailable

log = logging.getLogger("okura.http")

# Kubernetes' StatusReason for each HTTP status (k8s.io/apimachinery metav1.StatusReason*).
STATUS_REASONS = {
    400: "BadRequest",
    401: "Unauthorized",
    403: "Forbidden",
    404: "NotFound",
    405: "MethodNotAllowed",
    406: "NotAcceptable",
    409: "Conflict",
    410: "Gone",
    413: "RequestEntityTooLarge",
    415: "UnsupportedMediaType",
    422: "Invalid",
    429: "TooManyRequests",
    500: "InternalError",
    503: "ServiceUnavailable",
    507: "InsufficientStorage",
    504: "Timeout",
}
# /apis/<group>/<version>[/namespaces/<ns>]/<resource>[/<name>]
_API_PATH_RE = re.compile(r"^/apis/([^/]+)/[^/]+(?:/namespaces/[^/]+)?/([^/]+)(?:/(.+?))?/?$")


_API_ROOTS = ("/api", "/apis", "/version", "/openapi")
# Every 503 says when to come back (a back end timed out or is down): clients back off
# instead of retrying at once. Errors that know better set their own Retry-After.
DEFAULT_RETRY_AFTER = "5"


def is_api_path(path: str) -> bool:
    """Whether `path` belongs to the Kubernetes-style API (errors there are a `Status`)."""
    return any(path == root or path.startswith(root + "/") for root in _API_ROOTS)


def _body_response(body: bytes, status: int, headers: dict[str, str], head: bool) -> Response:
    if head:  # HEAD answers carry no body, but say how long it would have been
        return Response(
            status_code=status, headers={**headers, "Content-Length": str(len(body))}, media_type="application/json"
        )
    return Response(body, status_code=status, headers=headers, media_type="application/json")


def _headers(error: RegistryError) -> dict[str, str]:
    """The error's headers, with a Retry-After on every 503."""
    headers = dict(error.headers)
    if error.status == 503 and "Retry-After" not in headers:
        headers["Retry-After"] = DEFAULT_RETRY_AFTER
    return headers


def error_response(error: RegistryError, head: bool = False) -> Response:
    """The OCI error envelope."""
    body = json.dumps({"errors": [error.to_json()]}).encode()
    return _body_response(body, error.status, _headers(error), head)


def status_object(error: RegistryError, path: str) -> dict[str, Any]:
    """A Kubernetes `Status` (kind Status, apiVersion v1) describing `error` on `path`."""
    message = error.message
    details: dict[str, Any] = {}
    if error.status == 401:
        message = "Unauthorized"  # as the API server says it; kubectl shows it as "(Unauthorized)"
    elif isinstance(error, ResourceError):
        details = dict(error.details)
    elif error.status == 403:
        # As the API server says it: `<resource>.<group> "<name>" is forbidden: <why>`.
        m = _API_PATH_RE.match(path)
        if m:
            group, kind, name = m.groups()
            details = {k: v for k, v in {"name": name, "group": group, "kind": kind}.items() if v}
            message = f"{kind}.{group}{f' {json.dumps(name)}' if name else ''} is forbidden: {message}"
    retry = _headers(error).get("Retry-After", "")
    if retry.isdigit():
        details["retryAfterSeconds"] = int(retry)
    reason = error.reason or STATUS_REASONS.get(error.status, "InternalError" if error.status >= 500 else "")
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "details": details,
        "code": error.status,
    }


def render(request: Request, error: RegistryError) -> Response:
    """`error` as the answer to `request`: a Status under /apis/, the OCI envelope elsewhere."""
    head = request.method == "HEAD"
    path = request.url.path
    if is_api_path(path):
        body = json.dumps(status_object(error, path)).encode()
        return _body_response(body, error.status, _headers(error), head)
    return error_response(error, head)


async def handle_registry_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RegistryError)
    if exc.status >= 500:
        # The cause (a database host, a storage path) is for the log only.
        cause = f": {str(exc.__cause__).splitlines()[0][:300]}" if exc.__cause__ and str(exc.__cause__) else ""
        log.warning("%s %s failed: %s%s", request.method, request.url.path, exc.message, cause)
    return render(request, exc)


async def handle_http_exception(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    api = is_api_path(request.url.path)
    error: RegistryError
    if exc.status_code == 405:
        message = f"method {request.method} is not allowed on {request.url.path}"
        if api:
            message = "the server does not allow this method on the requested resource"
        error = Unsupported(message, headers=dict(exc.headers or {}))
    elif exc.status_code == 404:
        if api:
            error = RouteUnknown("the server could not find the requested resource")
        else:
            error = RouteUnknown(f"no endpoint for {request.method} {request.url.path}")
    else:
        error = RegistryError(exc.detail)
        error.status = exc.status_code
        error.code = "UNSUPPORTED"
    return render(request, error)


async def handle_client_disconnect(request: Request, exc: Exception) -> Response:
    # The client is gone; nothing will read this answer.
    return Response(status_code=499)


async def handle_storage_error(request: Request, exc: Exception) -> Response:
    # The cause (endpoint, bucket, key, path) goes to the log, never to the client.
    log.warning("storage failed serving %s %s: %s", request.method, request.url.path, exc)
    if isinstance(exc, StorageFull):
        error: RegistryError = InsufficientStorage(
            "blob storage is full; the registry cannot store data until space is freed"
        )
    elif isinstance(exc, StorageUnavailable):
        error = Unavailable("blob storage is unavailable, try again later", headers={"Retry-After": "5"})
    else:
        error = Unavailable("blob storage failed; the request was not completed")
    return render(request, error)


async def handle_os_error(request: Request, exc: Exception) -> Response:
    # An I/O failure of this host (not a bug): one log line, a 503 to the client.
    log.warning("I/O error serving %s %s: %s", request.method, request.url.path, exc)
    return render(request, Unavailable("the request could not be completed (server I/O error)"))


async def handle_unexpected(request: Request, exc: Exception) -> Response:
    log.exception("unexpected error serving %s %s", request.method, request.url.path)
    return render(request, _internal())


def _internal() -> RegistryError:
    error = RegistryError("internal server error")
    error.code = "UNKNOWN"
    return error


EXCEPTION_HANDLERS = {
    RegistryError: handle_registry_error,
    HTTPException: handle_http_exception,
    ClientDisconnect: handle_client_disconnect,
    StorageError: handle_storage_error,
    # Starlette re-raises what its catch-all handler renders (a second traceback, and the
    # connection closed); an OSError is not a bug, so it gets a handler of its own.
    OSError: handle_os_error,
    Exception: handle_unexpected,
}
