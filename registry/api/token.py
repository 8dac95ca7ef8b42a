"""GET /openshift/token: the Docker token protocol. Credentials in, a short-lived JWT
out, its `access` claims downscoped to what the caller may do. Unlike OpenShift, the
caller's long-lived token is never echoed back."""

from __future__ import annotations

import json

from starlette.requests import Request
from starlette.responses import Response

from auth.subjects import ANONYMOUS
from registry.api.routing import RouteSpec, openshift_access, public


async def issue_token(request: Request) -> Response:
    controller = openshift_access(request)
    identity = await controller.authenticate(request, allow_jwt=False) or ANONYMOUS
    scopes = [s for value in request.query_params.getlist("scope") for s in value.split(" ") if s]
    grants = await controller.grants_for(identity, scopes)
    token, expires_in, issued_at = await controller.issuer.mint(
        identity.name, grants, token_id=identity.token_id, not_after=identity.token_expires
    )
    request.state.identity = identity
    body = {"token": token, "access_token": token, "expires_in": expires_in, "issued_at": issued_at}
    return Response(json.dumps(body).encode(), media_type="application/json", headers={"Cache-Control": "no-store"})


ROUTES = [RouteSpec("/openshift/token", "token", {"GET": (issue_token, public)})]
