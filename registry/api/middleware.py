"""The outermost ASGI layer: API version header, metrics and the access log."""

from __future__ import annotations

import logging
import re
import time
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from registry import metrics
from registry.api.file_body import ZEROCOPYSEND

API_VERSION = (b"docker-distribution-api-version", b"registry/2.0")
access_log = logging.getLogger("okura.access")


audit_log = logging.getLogger("okura.audit")
# /v2/<repository>/(blobs|manifests|tags)/...: what the audit log reports (OpenShift's audit mode).
_AUDITED = re.compile(r"^/v2/(?P<repo>.+?)/(?P<kind>blobs/uploads|blobs|manifests|tags)(?:/(?P<ref>[^/]*))?")


def audit_action(method: str, kind: str) -> str:
    if kind == "tags":
        return "list"
    if method == "DELETE":
        return "delete"
    if kind == "blobs/uploads" or method in ("PUT", "POST", "PATCH"):
        return "push"
    return "pull"


class Observability:
    def __init__(self, app: ASGIApp, log_access: bool = True, audit: bool = False):
        self.app = app
        self.log_access = log_access
        self.audit = audit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        state: dict[str, Any] = {"status": 500, "out": 0, "in": 0}

        async def counting_receive() -> Message:
            message = await receive()
            if message["type"] == "http.request":
                state["in"] += len(message.get("body", b""))
            return message

        async def tagging_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                state["status"] = message["status"]
                message["headers"] = [*message.get("headers", ()), API_VERSION]
            elif message["type"] == "http.response.body":
                state["out"] += len(message.get("body", b""))
            elif message["type"] == ZEROCOPYSEND:
                state["out"] += message["count"]
            await send(message)

        metrics.in_flight.inc()
        try:
            await self.app(scope, counting_receive, tagging_send)
        finally:
            metrics.in_flight.dec()
            elapsed = time.perf_counter() - start
            method = scope["method"]
            endpoint = scope.get("endpoint")
            route = getattr(endpoint, "__name__", "unmatched")
            status = state["status"]
            metrics.requests_total.labels(method, route, str(status)).inc()
            metrics.request_duration.labels(method, route).observe(elapsed)
            metrics.request_size.labels(method).observe(state["in"])
            metrics.response_size.labels(method).observe(state["out"])
            if self.audit:
                _audit(scope, method, status)
            if self.log_access:
                client = scope.get("client")
                identity = (
                    getattr(scope.get("state", {}).get("identity"), "name", None)
                    if isinstance(scope.get("state"), dict)
                    else None
                )
                access_log.info(
                    "response",
                    extra={
                        "method": method,
                        "path": scope["path"],
                        "status": status,
                        "bytes_in": state["in"],
                        "bytes_out": state["out"],
                        "duration_ms": round(elapsed * 1000, 2),
                        "remote": client[0] if client else "-",
                        "subject": identity or "-",
                        "route": route,
                    },
                )


def _audit(scope: Scope, method: str, status: int) -> None:
    found = _AUDITED.match(scope["path"])
    if found is None:
        return
    state = scope.get("state")
    identity = state.get("identity") if isinstance(state, dict) else None
    client = scope.get("client")
    outcome = "allowed" if status < 400 else ("denied" if status in (401, 403) else "failed")
    audit_log.info(
        "audit",
        extra={
            "subject": getattr(identity, "name", None) or "system:anonymous",
            "action": audit_action(method, found["kind"]),
            "repository": found["repo"],
            "reference": found["ref"] or "",
            "method": method,
            "status": status,
            "outcome": outcome,
            "remote": client[0] if client else "-",
        },
    )
