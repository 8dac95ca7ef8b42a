"""Attacks on authentication and authorization: forged, expired and tampered JWTs, revoked
tokens, scope escalation at the token endpoint, cross-repository mounts as an oracle, path
tricks in names, brute force, secrets in error bodies, and key rotation."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import os
import time
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from tests.support.auth import Accounts, TokenDance, basic, okura_cli, parse_challenge
from tests.support.digests import sha256
from tests.support.http import assert_error, push_blob, push_image
from tests.support.media_types import OCI_MANIFEST

SERVICE = "okura-registry"
ISSUER = "okura"


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def claims(subject: str, access: list[dict[str, Any]] | None = None, /, **overrides: Any) -> dict[str, Any]:
    """JWT claims as the issuer writes them; an override of None removes the claim."""
    now = int(time.time())
    base = {"iss": ISSUER, "sub": subject, "aud": SERVICE, "iat": now, "nbf": now - 1, "exp": now + 300, "jti": "t"}
    base["access"] = access if access is not None else []
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not None}


def pull_push(name: str) -> list[dict[str, Any]]:
    return [{"type": "repository", "name": name, "actions": ["pull", "push", "delete", "*"]}]


def sign(app: Any, payload: dict[str, Any], key: Any = None, kid: str | None = None) -> str:
    """A JWT signed with the registry's own key (or `key`), carrying the registry's kid (or `kid`)."""
    issuer = app.app.state.runtime.access.issuer
    own_kid, own_key = issuer._signing
    return jwt.encode(payload, key or own_key, algorithm="ES256", headers={"kid": kid or own_kid})


def bearer(c: httpx.AsyncClient, token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def get_token(c: httpx.AsyncClient, *scopes: str) -> dict[str, Any]:
    r = await c.get("/openshift/token", params=[("service", SERVICE), *(("scope", s) for s in scopes)])
    assert r.status_code == 200, r.text
    return r.json()


def access_of(token: str) -> list[dict[str, Any]]:
    return jwt.decode(token, options={"verify_signature": False})["access"]


def kid_of(token: str) -> str:
    return jwt.get_unverified_header(token)["kid"]


def assert_unauthorized(r: httpx.Response) -> dict[str, Any]:
    error = assert_error(r, 401, "UNAUTHORIZED")
    assert parse_challenge(r.headers.get("WWW-Authenticate")) is not None, r.headers
    return error


@pytest.fixture
async def seeded(auth_app, accounts: Accounts, root):
    """team/app and secret/app with an image each; `viewer` may pull team, `editor` push to it."""
    await push_image(root, "team/app", "v1")
    await push_image(root, "secret/app", "v1")
    return {
        "viewer": await accounts.user("viewer", ("registry-viewer", "team")),
        "editor": await accounts.user("editor", ("registry-editor", "team")),
    }


# -- forged and broken JWTs -----------------------------------------------------------------------


async def test_a_correctly_signed_token_is_accepted(auth_app, raw, seeded):
    """The control for the forgery tests below: the crafting itself is right."""
    token = sign(auth_app, claims("viewer", pull_push("team/app")))
    assert (await raw.get("/v2/team/app/tags/list", headers=bearer(raw, token))).status_code == 200


INVALID_CLAIMS = {
    "expired": {"exp": int(time.time()) - 3600, "iat": int(time.time()) - 4000, "nbf": int(time.time()) - 4000},
    "not-yet-valid": {"nbf": int(time.time()) + 3600},
    "wrong-aud": {"aud": "another-registry"},
    "wrong-iss": {"iss": "someone-else"},
    "no-sub": {"sub": None},
    "no-exp": {"exp": None},
    "no-aud": {"aud": None},
    "malformed-access": {"access": "everything"},
}


async def test_invalid_claims_are_401(auth_app, raw, seeded):
    for case, overrides in INVALID_CLAIMS.items():
        token = sign(auth_app, claims("viewer", pull_push("team/app"), **overrides))
        r = await raw.get("/v2/team/app/tags/list", headers=bearer(raw, token))
        assert r.status_code == 401, (case, r.text)
        error = assert_unauthorized(r)
        assert token not in json.dumps(error)


async def test_expired_token_message(auth_app, raw, seeded):
    now = int(time.time())
    token = sign(auth_app, claims("viewer", pull_push("team/app"), iat=now - 900, nbf=now - 900, exp=now - 600))
    error = assert_unauthorized(await raw.get("/v2/team/app/tags/list", headers=bearer(raw, token)))
    assert "expired" in error["message"].lower(), error


async def test_tampered_token_is_401(auth_app, connect, raw, seeded):
    viewer = connect(auth_app, headers={"Authorization": basic("viewer", seeded["viewer"].token)})
    token = (await get_token(viewer, "repository:team/app:pull"))["token"]
    header, payload, signature = token.split(".")
    # The genuine token works...
    assert (await raw.get("/v2/team/app/tags/list", headers=bearer(raw, token))).status_code == 200
    # ...a copy with more rights, another subject, or one flipped byte does not.
    body = json.loads(unb64url(payload))
    for change in (
        {"access": pull_push("team/app") + pull_push("secret/app")},
        {"sub": "root"},
        {"exp": body["exp"] + 86400},
    ):
        forged = f"{header}.{b64url(json.dumps({**body, **change}).encode())}.{signature}"
        assert_unauthorized(await raw.get("/v2/secret/app/tags/list", headers=bearer(raw, forged)))
        assert_unauthorized(await raw.post("/v2/team/app/blobs/uploads/", headers=bearer(raw, forged)))
    flipped = bytearray(unb64url(payload))
    flipped[len(flipped) // 2] ^= 0x01
    forged = f"{header}.{b64url(bytes(flipped))}.{signature}"
    assert_unauthorized(await raw.get("/v2/team/app/tags/list", headers=bearer(raw, forged)))
    # Truncated signature, or none.
    for forged in (f"{header}.{payload}.{signature[:-4]}", f"{header}.{payload}."):
        assert_unauthorized(await raw.get("/v2/team/app/tags/list", headers=bearer(raw, forged)))


async def test_alg_none_and_hmac_confusion_are_401(auth_app, raw, seeded):
    issuer = auth_app.app.state.runtime.access.issuer
    kid, key = issuer._signing
    payload = b64url(json.dumps(claims("root", pull_push("secret/app"))).encode())
    for alg in ("none", "None", "NONE"):
        header = b64url(json.dumps({"alg": alg, "typ": "JWT", "kid": kid}).encode())
        for token in (f"{header}.{payload}.", f"{header}.{payload}.{b64url(b'x')}"):
            assert_unauthorized(await raw.get("/v2/secret/app/tags/list", headers=bearer(raw, token)))
    # HS256 keyed with the public key (the classic algorithm-confusion attack).
    from cryptography.hazmat.primitives import serialization

    public_pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    header = b64url(json.dumps({"alg": "HS256", "typ": "JWT", "kid": kid}).encode())
    mac = hmac.new(public_pem, f"{header}.{payload}".encode(), hashlib.sha256).digest()
    token = f"{header}.{payload}.{b64url(mac)}"
    assert_unauthorized(await raw.get("/v2/secret/app/tags/list", headers=bearer(raw, token)))


async def test_token_signed_by_another_key_is_401(auth_app, raw, seeded):
    kid = auth_app.app.state.runtime.access.issuer._signing[0]
    stranger = ec.generate_private_key(ec.SECP256R1())
    payload = claims("root", pull_push("secret/app"))
    for token in (
        sign(auth_app, payload, key=stranger),  # the registry's kid, another key
        sign(auth_app, payload, key=stranger, kid="0123456789abcdef"),  # an unknown kid
        jwt.encode(payload, stranger, algorithm="ES256"),  # no kid at all
    ):
        assert_unauthorized(await raw.get("/v2/secret/app/tags/list", headers=bearer(raw, token)))
    assert kid == auth_app.app.state.runtime.access.issuer._signing[0]


async def test_jwt_lacking_the_scope(auth_app, connect, raw, seeded, root):
    """Allowed subject, token without the scope: 401 insufficient_scope; a subject that may not do it
    at all: 403 DENIED."""
    await push_image(root, "team/other", "v1")
    viewer = connect(auth_app, headers={"Authorization": basic("viewer", seeded["viewer"].token)})
    token = (await get_token(viewer, "repository:team/app:pull"))["token"]
    r = await raw.get("/v2/team/other/tags/list", headers=bearer(raw, token))
    assert_unauthorized(r)
    challenge = parse_challenge(r.headers["WWW-Authenticate"])
    assert challenge["error"] == "insufficient_scope"
    assert challenge["scope"] == "repository:team/other:pull"
    assert_error(await raw.post("/v2/team/app/blobs/uploads/", headers=bearer(raw, token)), 403, "DENIED")
    assert_error(await raw.get("/v2/secret/app/tags/list", headers=bearer(raw, token)), 403, "DENIED")


async def test_a_jwt_cannot_be_exchanged_for_a_broader_or_longer_one(auth_app, accounts, connect, seeded):
    """A bearer JWT presented to the token endpoint must not become a credential of its own: it may
    be refused (401), or at most yield a token with no more access and no later expiry. Otherwise a
    pull-only token, or one whose long-lived token was revoked, can be renewed into push forever."""
    editor = seeded["editor"]
    c = connect(auth_app, headers={"Authorization": basic("editor", editor.token)})
    original = (await get_token(c, "repository:team/app:pull"))["token"]
    first = jwt.decode(original, options={"verify_signature": False})
    await accounts.store.revoke_token(editor.token_id)
    accounts.controller.authorizer.changed()
    exchanged = connect(auth_app, headers={"Authorization": f"Bearer {original}"})
    r = await exchanged.get(
        "/openshift/token", params=[("service", SERVICE), ("scope", "repository:team/app:pull,push")]
    )
    if r.status_code == 401:
        return
    assert r.status_code == 200, r.text
    second = jwt.decode(r.json()["token"], options={"verify_signature": False})
    assert second["access"] == first["access"], "a pull-only JWT was exchanged for push"
    assert second["exp"] <= first["exp"], "a JWT was renewed past its own expiry"


async def test_a_retired_key_does_not_verify_tokens_issued_after_its_retirement(auth_app, raw, seeded):
    """Rotation is what an operator does after a key leaks: a key retired longer ago than any token
    it signed can live (token_ttl + leeway) must not verify new tokens."""
    from datetime import timedelta

    from sqlalchemy import update

    from registry.metadata.db import utcnow
    from registry.metadata.schema import signing_keys

    issuer = auth_app.app.state.runtime.access.issuer
    old_kid, old_key = issuer._signing
    await issuer.rotate()
    long_ago = utcnow() - timedelta(seconds=float(issuer.config.token_ttl) + 3600)
    await auth_app.app.state.runtime.registry.db.write(
        lambda conn: conn.execute(update(signing_keys).where(signing_keys.c.kid == old_kid).values(retired_at=long_ago))
    )
    await issuer._reload()
    forged = sign(auth_app, claims("viewer", pull_push("team/app")), key=old_key, kid=old_kid)
    assert_unauthorized(await raw.get("/v2/team/app/tags/list", headers=bearer(raw, forged)))


# -- long-lived tokens: revocation and expiry ----------------------------------------------------------


async def test_revoked_token_stops_working_immediately(auth_app, accounts, connect, seeded):
    viewer = seeded["viewer"]
    for c in (
        connect(auth_app, headers={"Authorization": f"Bearer {viewer.token}"}),
        connect(auth_app, headers={"Authorization": basic("anyone", viewer.token)}),
    ):
        assert (await c.get("/v2/team/app/tags/list")).status_code == 200  # now cached
    await accounts.store.revoke_token(viewer.token_id)
    accounts.controller.authorizer.changed()  # what the admin API and the CLI do after revoking
    for c in (
        connect(auth_app, headers={"Authorization": f"Bearer {viewer.token}"}),
        connect(auth_app, headers={"Authorization": basic("anyone", viewer.token)}),
    ):
        assert_unauthorized(await c.get("/v2/team/app/tags/list"))
    # Nor can it get a JWT any more.
    r = await connect(auth_app, headers={"Authorization": basic("anyone", viewer.token)}).get("/openshift/token")
    assert_unauthorized(r)


async def test_revocation_elsewhere_applies_within_the_cache_bound(auth_app, accounts, connect, seeded, monkeypatch):
    """A revocation that does not bump this host's generation (another replica's) applies once the
    token cache entry ages out (TOKEN_CACHE_SECONDS, shortened here)."""
    monkeypatch.setattr("auth.authn.TOKEN_CACHE_SECONDS", 0.3)
    viewer = seeded["viewer"]
    c = connect(auth_app, headers={"Authorization": f"Bearer {viewer.token}"})
    assert (await c.get("/v2/team/app/tags/list")).status_code == 200
    await accounts.store.revoke_token(viewer.token_id)  # no generation bump
    await asyncio.sleep(0.4)
    assert_unauthorized(await c.get("/v2/team/app/tags/list"))


async def test_expiring_token_is_not_cached_past_its_expiry(auth_app, accounts, connect, seeded):
    secret, _ = await accounts.store.create_token("viewer", expires_in=1.0)
    c = connect(auth_app, headers={"Authorization": f"Bearer {secret}"})
    assert (await c.get("/v2/team/app/tags/list")).status_code == 200
    await asyncio.sleep(1.1)
    assert_unauthorized(await c.get("/v2/team/app/tags/list"))


async def test_cli_changes_apply_to_the_running_server_at_once(auth_app, connect, seeded):
    """`okura auth revoke-token` and `add-role` from another process on this host."""
    viewer = seeded["viewer"]
    c = connect(auth_app, headers={"Authorization": f"Bearer {viewer.token}"})
    assert (await c.get("/v2/team/app/tags/list")).status_code == 200
    assert_error(await c.post("/v2/team/app/blobs/uploads/"), 403, "DENIED")
    code, _, err = await okura_cli(auth_app, "add-role", "registry-editor", "viewer", "-n", "team")
    assert code == 0, err
    assert (await c.post("/v2/team/app/blobs/uploads/")).status_code == 202
    code, _, err = await okura_cli(auth_app, "revoke-token", viewer.token_id)
    assert code == 0, err
    assert_unauthorized(await c.get("/v2/team/app/tags/list"))


# -- the token endpoint never grants more than allowed -------------------------------------------------


async def test_scope_escalation_at_the_token_endpoint(auth_app, accounts, connect, seeded):
    team_admin = await accounts.user("boss", ("admin", "team"))
    viewer = connect(auth_app, headers={"Authorization": basic("viewer", seeded["viewer"].token)})
    team_only = [{"type": "repository", "name": "team/app", "actions": ["pull"]}]

    requests: list[list[str]] = [
        # Repeated scope parameters: each is downscoped on its own.
        ["repository:team/app:pull,push,delete", "repository:team/app:push", "repository:secret/app:pull,push"],
        # Several scopes in one parameter, and case games with the actions.
        ["repository:team/app:pull repository:secret/app:pull", "repository:team/app:PUSH,Pull,DELETE"],
        # The wildcard: pull is allowed, `*` (which includes delete) is not.
        ["repository:team/app:pull", "repository:team/app:*"],
        # Names with path tricks, other spellings and trailing junk.
        [
            "repository:team/app:pull",
            "repository:team/../secret/app:pull,push",
            "repository:team/%2e%2e/secret/app:pull",
            "repository:team//secret/app:pull",
            "repository:Secret/app:pull",
            "repository:secret/app:pull:push",
            "repository:team/app/../../secret/app:pull",
            "repository:secret/app:pull#repository:team/app:pull",
            "registry:admin:*",
            "registry:metrics:get",
            "image:secret/app:pull",
        ],
    ]
    for scopes in requests:
        token = (await get_token(viewer, *scopes))["token"]
        assert access_of(token) == team_only, scopes
    # A user without rights asking for someone else's repository gets nothing.
    nobody = await accounts.user("nobody")
    c = connect(auth_app, headers={"Authorization": basic("nobody", nobody.token)})
    token = (await get_token(c, "repository:secret/app:pull,push", "repository:team/app:*"))["token"]
    assert access_of(token) == []
    # The namespace admin gets `*` in team, nothing in secret.
    c = connect(auth_app, headers={"Authorization": basic("boss", team_admin.token)})
    token = (await get_token(c, "repository:team/app:*", "repository:secret/app:*"))["token"]
    assert access_of(token) == [{"type": "repository", "name": "team/app", "actions": ["*"]}]
    # And the minted viewer token really does not let it push or reach secret.
    token = (await get_token(viewer, *requests[0]))["token"]
    assert_error(await viewer.post("/v2/team/app/blobs/uploads/", headers=bearer(viewer, token)), 403, "DENIED")
    assert_error(await viewer.get("/v2/secret/app/tags/list", headers=bearer(viewer, token)), 403, "DENIED")


async def test_token_endpoint_with_bad_credentials_is_401(auth_app, connect, seeded):
    for header in (basic("viewer", "not-the-token"), "Bearer okr_forged", "Basic Og==", "Basic !!!"):
        r = await connect(auth_app, headers={"Authorization": header}).get(
            "/openshift/token", params={"service": SERVICE, "scope": "repository:team/app:pull"}
        )
        assert_unauthorized(r)


# -- cross-repository mounts ------------------------------------------------------------------------------


async def _mount(c: httpx.AsyncClient, digest: str, source: str | None) -> httpx.Response:
    params = {"mount": digest, **({"from": source} if source else {})}
    return await c.post("/v2/team/app/blobs/uploads/", params=params)


def _shape(r: httpx.Response) -> tuple[Any, ...]:
    """A response without the parts that differ between any two upload sessions."""
    headers = sorted((k, v) for k, v in r.headers.items() if k not in ("location", "docker-upload-uuid"))
    return r.status_code, tuple(headers), r.content


@pytest.mark.parametrize("credential", ["bearer-token", "jwt"])
async def test_mount_from_an_unreadable_namespace_falls_back_to_an_upload(
    auth_app, accounts, connect, root, seeded, credential
):
    secret_blob = os.urandom(64)
    digest = await push_blob(root, "secret/app", secret_blob)
    missing = sha256(b"never pushed anywhere")
    editor = seeded["editor"]
    if credential == "jwt":
        c = connect(auth_app, auth=TokenDance("editor", editor.token))
    else:
        c = connect(auth_app, headers={"Authorization": f"Bearer {editor.token}"})

    answers = [
        await _mount(c, digest, "secret/app"),
        await _mount(c, missing, "secret/app"),
        await _mount(c, digest, "secret/nonexistent"),
        await _mount(c, digest, None),  # without from: only readable repositories are candidates
        await _mount(c, missing, None),
    ]
    for r in answers:
        assert r.status_code == 202, r.text
        assert r.headers["Location"].startswith("/v2/team/app/blobs/uploads/")
    assert len({_shape(r) for r in answers}) == 1, [_shape(r) for r in answers]
    assert_error(await c.head(f"/v2/team/app/blobs/{digest}"), 404)

    # Once the editor may read secret, the same mounts link the blob.
    await accounts.bind("registry-viewer", "editor", "secret")
    c = connect(auth_app, headers={"Authorization": f"Bearer {editor.token}"})
    r = await _mount(c, digest, None)
    assert r.status_code == 201, r.text
    assert (await c.get(f"/v2/team/app/blobs/{digest}")).content == secret_blob


async def test_mount_source_name_tricks(auth_app, connect, root, seeded):
    digest = await push_blob(root, "secret/app", os.urandom(64))
    c = connect(auth_app, headers={"Authorization": f"Bearer {seeded['editor'].token}"})
    sources = ("team/../secret/app", "team/app/../../secret/app", "Secret/app", "secret//app", "team/%2e%2e/secret")
    for source in sources:
        r = await _mount(c, digest, source)
        assert r.status_code in (202, 400), (source, r.status_code, r.text)
        assert r.status_code != 201
    assert_error(await c.head(f"/v2/team/app/blobs/{digest}"), 404)


# -- path tricks in repository names ---------------------------------------------------------------------


async def test_path_tricks_never_reach_another_namespace(auth_app, connect, root, seeded):
    _, secret_manifest = await push_image(root, "secret/app", "v2")
    c = connect(auth_app, headers={"Authorization": f"Bearer {seeded['editor'].token}"})
    tricks = [
        "/v2/team/%2e%2e/secret/app/manifests/v2",
        "/v2/team/%2E%2E/secret/app/manifests/v2",
        "/v2/team/app/%2e%2e/%2e%2e/secret/app/manifests/v2",
        "/v2/team/..%2Fsecret/app/manifests/v2",
        "/v2/team/%2Fsecret/app/manifests/v2",
        "/v2/team//secret/app/manifests/v2",
        "/v2//secret/app/manifests/v2",
        "/v2/team/.%2e/secret/app/manifests/v2",
        "/v2/Team/app/manifests/v1",
        "/v2/SECRET/app/manifests/v2",
        "/v2/team%2Fsecret/app/manifests/v2",
        "/v2/team/app%00/manifests/v1",
    ]
    for path in tricks:
        r = await c.get(path, headers={"Accept": OCI_MANIFEST})
        assert r.status_code in (400, 404), (path, r.status_code, r.text)
        assert secret_manifest not in r.content
    # httpx itself resolves a literal `..` before sending: that is simply a request for secret/app.
    r = await c.get("/v2/team/../secret/app/manifests/v2")
    assert_error(r, 403, "DENIED")
    # Pushing through a trick creates nothing anywhere.
    for path in ("/v2/team/%2e%2e/secret/evil/blobs/uploads/", "/v2/team//secret/evil/blobs/uploads/"):
        r = await c.post(path)
        assert r.status_code in (400, 404), (path, r.status_code, r.text)
    catalog = (await root.get("/v2/_catalog")).json()["repositories"]
    assert catalog == ["secret/app", "team/app"]


# -- brute force ---------------------------------------------------------------------------------------


async def test_repeated_bad_passwords_are_slowed_then_refused(make_app, connect):
    app = await make_app(auth={"enabled": True, "slow_after": 1, "max_failures": 4, "lockout": 60})
    alice = await Accounts(app).user("alice", ("registry-viewer", "team"), password="correct horse")
    bob = await Accounts(app).user("bob", ("registry-viewer", "team"), password="battery staple")
    attacker = "10.9.8.7"
    durations = []
    for attempt in range(4):
        c = connect(app, headers={"Authorization": basic("alice", f"guess-{attempt}")}, remote=attacker)
        start = time.monotonic()
        r = await c.get("/openshift/token", params={"service": SERVICE})
        durations.append(time.monotonic() - start)
        assert_unauthorized(r)
    assert durations[2] >= 0.4, durations  # slowed down
    # Locked out: passwords from that client (even the right one, even another account's), on
    # every endpoint, and alice's password from anywhere.
    for header, remote in (
        (basic("alice", "guess-5"), attacker),
        (basic("alice", "correct horse"), attacker),
        (basic("bob", "battery staple"), attacker),
        (basic("alice", "correct horse"), "10.1.1.1"),
    ):
        c = connect(app, headers={"Authorization": header}, remote=remote)
        for r in (await c.get("/openshift/token"), await c.get("/v2/team/app/tags/list")):
            error = assert_error(r, 429, "TOOMANYREQUESTS")
            assert 0 < int(r.headers["Retry-After"]) <= 60
            assert "correct horse" not in json.dumps(error)
    # Tokens cannot be guessed: a valid one is accepted even from the locked client.
    for header in (f"Bearer {alice.token}", basic("alice", alice.token), basic("anyone", bob.token)):
        c = connect(app, headers={"Authorization": header}, remote=attacker)
        assert (await c.get("/openshift/token")).status_code == 200, header
    # Other clients and other accounts are not affected.
    c = connect(app, headers={"Authorization": basic("bob", "battery staple")}, remote="10.1.1.1")
    assert (await c.get("/openshift/token")).status_code == 200


# -- secrets in error bodies ---------------------------------------------------------------------------


async def test_secrets_never_appear_in_error_bodies(auth_app, connect, seeded, accounts):
    await accounts.user("carol", ("registry-viewer", "team"), password="Carol's-Pa55word")
    viewer_token = seeded["viewer"].token
    real_jwt = sign(auth_app, claims("viewer", pull_push("team/app"), exp=int(time.time()) - 3600))
    secrets = [viewer_token, "Carol's-Pa55word", "okr_ThisIsNotARealToken0123456789", real_jwt]
    headers = [
        basic("carol", "Carol's-Pa55word-wrong"),
        basic("carol", "okr_ThisIsNotARealToken0123456789"),
        "Bearer okr_ThisIsNotARealToken0123456789",
        f"Bearer {real_jwt}",
        f"Token {viewer_token}",
        viewer_token,  # a client that forgot the scheme
        f"{viewer_token} trailing",
        f"Basic {viewer_token}",
    ]
    leaks = []
    for header in headers:
        c = connect(auth_app, headers={"Authorization": header})
        for r in (await c.get("/v2/secret/app/tags/list"), await c.get("/openshift/token")):
            assert r.status_code == 401, (header, r.text)
            text = (r.text + json.dumps(dict(r.headers))).lower()
            leaks += [(header[:12], r.request.url.path, r.text) for secret in secrets if secret.lower() in text]
    assert leaks == []


async def test_malformed_credentials_are_401(auth_app, connect, seeded):
    for header in ("Basic Og==", "Basic ", "Basic Zm9v", "Basic OnNlY3JldA==", "Bearer", "Digest x=y", "Basic Og"):
        r = await connect(auth_app, headers={"Authorization": header}).get("/v2/team/app/tags/list")
        assert r.status_code == 401, (header, r.text)
        assert_unauthorized(r)


# -- signing key rotation ------------------------------------------------------------------------------


async def test_key_rotation_keeps_live_tokens_valid(auth_app, connect, raw, seeded):
    viewer = connect(auth_app, headers={"Authorization": basic("viewer", seeded["viewer"].token)})
    before = (await get_token(viewer, "repository:team/app:pull"))["token"]  # not used yet: not cached
    new_kid = await auth_app.app.state.runtime.access.issuer.rotate()
    assert kid_of(before) != new_kid
    assert (await raw.get("/v2/team/app/tags/list", headers=bearer(raw, before))).status_code == 200
    after = (await get_token(viewer, "repository:team/app:pull"))["token"]
    assert kid_of(after) == new_kid
    assert (await raw.get("/v2/team/app/tags/list", headers=bearer(raw, after))).status_code == 200


async def test_key_rotation_through_the_cli_reaches_the_running_server(auth_app, connect, raw, seeded):
    viewer = connect(auth_app, headers={"Authorization": basic("viewer", seeded["viewer"].token)})
    before = (await get_token(viewer, "repository:team/app:pull"))["token"]
    code, _, err = await okura_cli(auth_app, "rotate-key")
    assert code == 0, err
    new_kid = err.split("new signing key ", 1)[1].split(";", 1)[0].strip()
    assert (await raw.get("/v2/team/app/tags/list", headers=bearer(raw, before))).status_code == 200
    after = (await get_token(viewer, "repository:team/app:pull"))["token"]
    assert kid_of(after) == new_kid, "the server still signs with the retired key after `okura auth rotate-key`"
