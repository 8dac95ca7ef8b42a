"""Operational endpoints: health and Prometheus metrics."""

from __future__ import annotations

import asyncio
import json
import logging

from starlette.requests import Request
from starlette.responses import Response

from auth.access import Access
from registry import metrics
from registry.api.routing import RouteSpec, cluster_check, public, registry

HEALTH_TIMEOUT = 5.0
log = logging.getLogger("okura.health")


async def healthz(request: Request) -> Response:
    """200 when both storage and the database answer, 503 naming what failed otherwise."""
    reg = registry(request)
    checks = {"storage": reg.storage.check(), "database": reg.db.ping()}
    results: dict[str, str] = {}
    for name, check in checks.items():
        try:
            await asyncio.wait_for(check, HEALTH_TIMEOUT)
            results[name] = "ok"
        except TimeoutError:
            results[name] = f"failed: no answer within {HEALTH_TIMEOUT:g}s"
            log.warning("health check of %s: no answer within %gs", name, HEALTH_TIMEOUT)
        except Exception as e:  # any failure means unhealthy; say which (the details are logged)
            results[name] = "failed: unavailable"
            log.warning("health check of %s failed: %s", name, str(e)[:300] or type(e).__name__)
    healthy = all(v == "ok" for v in results.values())
    body = json.dumps({"status": "ok" if healthy else "unavailable", "checks": results}).encode()
    return Response(
        body, status_code=200 if healthy else 503, media_type="application/json", headers={"Cache-Control": "no-cache"}
    )


async def metrics_endpoint(request: Request) -> Response:
    body, content_type = metrics.render()
    return Response(body, media_type=content_type)


metrics_access = cluster_check("get", "registry/metrics", Access("registry", "metrics", "get"))

ROUTES = [
    RouteSpec("/healthz", "healthz", {"GET": (healthz, public), "HEAD": (healthz, public)}),
    RouteSpec("/metrics", "metrics", {"GET": (metrics_endpoint, metrics_access)}),
]
