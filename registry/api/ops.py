"""Operational endpoints: health, liveness and readiness probes, and Prometheus metrics."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable

from starlette.requests import Request
from starlette.responses import Response

from auth.access import Access
from registry import metrics
from registry.api.routing import RouteSpec, cluster_check, public, registry
from registry.model.context import Registry
from registry.periodic import result_within

HEALTH_TIMEOUT = 5.0
# Shorter than a readiness probe's timeout (give it 3 s), so that the probe gets an answer
# naming what is slow rather than no answer at all.
READY_TIMEOUT = 2.0
log = logging.getLogger("okura.health")


async def _check(name: str, check: Awaitable[None], timeout: float) -> str:
    """ "ok", or "failed: ..." without the details (anyone may call the probes; the log has them)."""
    try:
        await result_within(check, timeout)  # a slow check finishes on its own, within its deadlines
        return "ok"
    except TimeoutError:
        log.warning("health check of %s: no answer within %gs", name, timeout)
        return f"failed: no answer within {timeout:g}s"
    except Exception as e:  # any failure means unhealthy; say which (the details are logged)
        log.warning("health check of %s failed: %s", name, str(e)[:300] or type(e).__name__)
        return "failed: unavailable"


async def backend_checks(reg: Registry, timeout: float) -> dict[str, str]:
    """The storage and the database, checked together: each "ok" or "failed: ..."."""
    checks = {"storage": reg.storage.check(), "database": reg.db.ping()}
    outcomes = await asyncio.gather(*(_check(name, check, timeout) for name, check in checks.items()))
    return dict(zip(checks, outcomes, strict=True))


def _probe_answer(checks: dict[str, str]) -> Response:
    """200 when every check is "ok", 503 otherwise; never cached."""
    healthy = all(v == "ok" for v in checks.values())
    body = json.dumps({"status": "ok" if healthy else "unavailable", "checks": checks}).encode()
    return Response(
        body, status_code=200 if healthy else 503, media_type="application/json", headers={"Cache-Control": "no-cache"}
    )


async def healthz(request: Request) -> Response:
    """200 when both storage and the database answer, 503 naming what failed otherwise."""
    return _probe_answer(await backend_checks(registry(request), HEALTH_TIMEOUT))


async def livez(request: Request) -> Response:
    """The process and its event loop answer: no backend is asked (a slow database must not
    get the process restarted)."""
    return Response(b'{"status":"ok"}', media_type="application/json", headers={"Cache-Control": "no-cache"})


async def readyz(request: Request) -> Response:
    """Whether this replica should get traffic: the database and the storage answer within
    READY_TIMEOUT and it is not draining (shutting down after SIGTERM)."""
    reg = registry(request)
    backends = await backend_checks(reg, READY_TIMEOUT)
    draining = "failed: shutting down" if reg.settings.draining else "ok"
    return _probe_answer({"database": backends["database"], "storage": backends["storage"], "draining": draining})


async def metrics_endpoint(request: Request) -> Response:
    body, content_type = metrics.render()
    return Response(body, media_type=content_type)


metrics_access = cluster_check("get", "registry/metrics", Access("registry", "metrics", "get"))

ROUTES = [
    RouteSpec("/healthz", "healthz", {"GET": (healthz, public), "HEAD": (healthz, public)}),
    RouteSpec("/livez", "livez", {"GET": (livez, public), "HEAD": (livez, public)}),
    RouteSpec("/readyz", "readyz", {"GET": (readyz, public), "HEAD": (readyz, public)}),
    RouteSpec("/metrics", "metrics", {"GET": (metrics_endpoint, metrics_access)}),
]
