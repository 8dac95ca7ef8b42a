"""Bearer JWTs minted from a long-lived token die with it: revoking the token refuses its JWTs
within seconds on every process and replica (at once where the revocation is announced), while
JWTs of other tokens keep working; a JWT never outlives the token it was minted from."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
import jwt
import pytest

from tests.support.auth import AUTH, Accounts, Connect, Person, basic
from tests.support.http import assert_error, push_image

SERVICE = "okura-registry"


async def mint(connect: Connect, app: Any, person: Person, secret: str | None = None) -> str:
    c = connect(app, headers={"Authorization": basic(person.name, secret or person.token)})
    r = await c.get("/openshift/token", params={"service": SERVICE, "scope": "repository:team/app:pull"})
    assert r.status_code == 200, r.text
    return r.json()["token"]


def claims_of(token: str) -> dict[str, Any]:
    return jwt.decode(token, options={"verify_signature": False})


async def pull(connect: Connect, app: Any, token: str) -> httpx.Response:
    return await connect(app, headers={"Authorization": f"Bearer {token}"}).get("/v2/team/app/tags/list")


async def refused_within(connect: Connect, app: Any, token: str, seconds: float) -> float:
    """How long until the JWT is refused (401); fails after `seconds`."""
    start = time.monotonic()
    while True:
        r = await pull(connect, app, token)
        if r.status_code == 401:
            assert_error(r, 401, "UNAUTHORIZED")
            return time.monotonic() - start
        assert r.status_code == 200, r.text
        assert time.monotonic() - start < seconds, f"the JWT of a revoked token still works after {seconds}s"
        await asyncio.sleep(0.05)


@pytest.fixture
async def people(auth_app, accounts: Accounts, root) -> dict[str, Person]:
    await push_image(root, "team/app", "v1")
    return {
        "viewer": await accounts.user("viewer", ("registry-viewer", "team"), password="viewer's password"),
        "other": await accounts.user("other", ("registry-viewer", "team")),
    }


async def test_a_jwt_names_its_token_and_never_outlives_it(auth_app, accounts, connect, people):
    viewer = people["viewer"]
    claims = claims_of(await mint(connect, auth_app, viewer))
    assert claims["tid"] == viewer.token_id
    assert claims["exp"] - claims["iat"] == 300
    secret, info = await accounts.store.create_token("viewer", expires_in=60)
    c = connect(auth_app, headers={"Authorization": basic("viewer", secret)})
    r = await c.get("/openshift/token", params={"service": SERVICE, "scope": "repository:team/app:pull"})
    claims = claims_of(r.json()["token"])
    assert claims["tid"] == info.id
    assert claims["exp"] <= int(info.expires_at.timestamp())
    assert r.json()["expires_in"] <= 60
    # Minted from a password: no token to name.
    assert "tid" not in claims_of(await mint(connect, auth_app, viewer, "viewer's password"))


async def test_revoking_through_the_admin_api_refuses_its_jwts_at_once(auth_app, accounts, connect, people):
    chief = await accounts.user("chief", ("cluster-admin", None))
    admin = connect(auth_app, headers={"Authorization": f"Bearer {chief.token}"})
    revoked, unrelated = await mint(connect, auth_app, people["viewer"]), await mint(connect, auth_app, people["other"])
    for token in (revoked, unrelated):
        assert (await pull(connect, auth_app, token)).status_code == 200  # verified and cached
    assert (await admin.delete(f"/admin/v1/tokens/{people['viewer'].token_id}")).status_code == 204
    error = assert_error(await pull(connect, auth_app, revoked), 401, "UNAUTHORIZED")
    assert "revoked" in error["message"], error
    assert (await pull(connect, auth_app, unrelated)).status_code == 200
    # The viewer's password still mints working JWTs (only the token was revoked).
    assert (
        await pull(connect, auth_app, await mint(connect, auth_app, people["viewer"], "viewer's password"))
    ).status_code == 200


async def test_revoking_through_the_store_as_the_cli_does(auth_app, accounts, connect, people):
    revoked, unrelated = await mint(connect, auth_app, people["viewer"]), await mint(connect, auth_app, people["other"])
    assert (await pull(connect, auth_app, revoked)).status_code == 200
    await accounts.store.revoke_token(people["viewer"].token_id)
    accounts.controller.authorizer.changed()  # `okura auth revoke-token` bumps this host's generation
    assert_error(await pull(connect, auth_app, revoked), 401, "UNAUTHORIZED")
    assert (await pull(connect, auth_app, unrelated)).status_code == 200


async def test_an_unannounced_revocation_applies_within_the_reload_interval(
    auth_app, accounts, connect, people, monkeypatch
):
    """A revocation this host hears nothing about (another replica's, on SQLite) applies once the
    revoked set is reloaded (every few seconds; shortened here)."""
    monkeypatch.setattr("auth.revocations.RELOAD_SECONDS", 0.3)
    revoked, unrelated = await mint(connect, auth_app, people["viewer"]), await mint(connect, auth_app, people["other"])
    assert (await pull(connect, auth_app, revoked)).status_code == 200
    await accounts.store.revoke_token(people["viewer"].token_id)  # no generation bump
    assert await refused_within(connect, auth_app, revoked, 2.0) >= 0
    assert (await pull(connect, auth_app, unrelated)).status_code == 200


async def test_replicas_refuse_a_revoked_tokens_jwts_at_once_on_postgresql(
    backend, make_app, connect, tmp_path, monkeypatch
):
    """Two replicas on one PostgreSQL database, each with its own data dir (so no shared generation
    file): a revocation on one is announced to the other, which refuses the JWT at once, long
    before its periodic reload (made very long here)."""
    if backend != "postgres":
        pytest.skip("announcing changes to other replicas is PostgreSQL's NOTIFY")
    monkeypatch.setattr("auth.revocations.RELOAD_SECONDS", 3600.0)
    one = await make_app(auth=AUTH)
    two = await make_app(auth=AUTH, data_dir=str(tmp_path / "replica-two"))
    accounts = Accounts(one)
    root = await accounts.user("root", ("cluster-admin", None))
    await push_image(connect(one, headers={"Authorization": f"Bearer {root.token}"}), "team/app", "v1")
    viewer = await accounts.user("viewer", ("registry-viewer", "team"))
    other = await accounts.user("other", ("registry-viewer", "team"))
    revoked, unrelated = await mint(connect, one, viewer), await mint(connect, one, other)
    for token in (revoked, unrelated):
        assert (await pull(connect, two, token)).status_code == 200
    await accounts.store.revoke_token(viewer.token_id)  # what replica one (or the CLI there) does
    assert await refused_within(connect, two, revoked, 3.0) < 3.0
    assert (await pull(connect, two, unrelated)).status_code == 200
