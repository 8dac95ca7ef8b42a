"""What a server logs, and so what the pod log API serves (`kubectl logs`, `okura logs` read the
ring of recent lines), never holds a credential: not a bearer token, a JWT, a password, nor a
Basic header, whether it was accepted or refused, nor a token in a query string. The access and
audit logs name the path only, and the subject."""

from __future__ import annotations

import base64
import logging
from collections.abc import Iterator

import pytest

from registry.logs import LogfmtFormatter, LogRing
from tests.support.auth import AUTH, Accounts, TokenDance, basic

pytestmark = pytest.mark.parametrize("backend", ["sqlite"])  # what is logged does not depend on it


@pytest.fixture
def ring() -> Iterator[LogRing]:
    """Every line logged during the test, at debug level, as the server's ring keeps them."""
    ring = LogRing(10_000)
    ring.setFormatter(LogfmtFormatter())
    root = logging.getLogger()
    level = root.level
    root.addHandler(ring)
    root.setLevel(logging.DEBUG)
    try:
        yield ring
    finally:
        root.removeHandler(ring)
        root.setLevel(level)


async def test_credentials_leave_no_trace_in_the_log(make_app, connect, ring):
    app = await make_app(auth=AUTH, log={"access_log": True, "audit": True})
    accounts = Accounts(app)
    admin = await accounts.user("chief", ("cluster-admin", None), password="Pa55-w0rd-chief-secret")
    wrong_password = "N0t-the-password-at-all"
    bogus_token = "okt_" + "Z" * 43
    query_secret = "q-secret-3b1f9c0e7a"

    sent: list[str] = []

    async def get(path: str, authorization: str | None = None) -> int:
        headers = {"Authorization": authorization} if authorization else {}
        if authorization:
            sent.append(authorization)
        return (await connect(app, headers=headers).get(path)).status_code

    # Accepted: a raw bearer token, Basic with a password, Basic with a token; the API and /v2/.
    assert await get("/v2/_catalog", f"Bearer {admin.token}") == 200
    assert await get("/api/v1/namespaces/openshift-image-registry/pods", f"Bearer {admin.token}") == 200
    assert await get("/v2/", basic("chief", "Pa55-w0rd-chief-secret")) == 200
    assert await get("/v2/", basic("chief", admin.token)) == 200
    # A JWT from the token endpoint, used as the docker clients do.
    dance = TokenDance("chief", admin.token)
    r = await connect(app, auth=dance).get("/v2/team/app/tags/list")
    assert r.status_code == 404 and dance.last_token
    # Refused: a wrong password, an unknown token, an unknown scheme, credentials in the query.
    assert await get("/v2/", basic("chief", wrong_password)) == 401
    assert await get("/v2/", f"Bearer {bogus_token}") == 401
    assert await get("/v2/", f"Token {admin.token}") == 401
    assert await get(f"/v2/_catalog?token={query_secret}&access_token={query_secret}") == 401
    assert await get(f"/openshift/token?password={query_secret}", basic("chief", wrong_password)) == 401

    # The server's lines (the test's own HTTP client logs its request URLs, query and all).
    lines = [line.text for line in ring.lines() if not line.text.endswith("logger=httpx")]
    assert any("path=/v2/_catalog" in line and "subject=chief" in line for line in lines), lines
    secrets = {admin.token, "Pa55-w0rd-chief-secret", wrong_password, bogus_token, query_secret, dance.last_token}
    secrets |= {value.partition(" ")[2] for value in sent}  # base64 of each Basic header, raw bearer values
    secrets |= {base64.b64encode(s.encode()).decode() for s in (admin.token, "Pa55-w0rd-chief-secret")}
    leaked = sorted({secret for secret in secrets for line in lines if secret in line})
    assert leaked == [], "\n".join(line for line in lines if any(s in line for s in leaked))
    assert not any("authorization" in line.lower() and "bearer" in line.lower() for line in lines)
