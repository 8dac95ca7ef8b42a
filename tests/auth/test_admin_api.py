"""The access-management API under /admin/v1: each operation its own verb and resource (users,
serviceaccounts, tokens, subjectaccessreviews: cluster-admin only; rolebindings: in the binding's
namespace, for that namespace's admin too, never granting more than the caller holds)."""

from __future__ import annotations

import httpx
import jwt
import pytest

from tests.support.auth import TokenDance, basic, okura_cli, parse_challenge
from tests.support.http import assert_error, push_image

ENDPOINTS = [
    ("GET", "/admin/v1/users", None),
    ("POST", "/admin/v1/users", {"name": "mallory"}),
    ("GET", "/admin/v1/serviceaccounts", None),
    ("POST", "/admin/v1/serviceaccounts", {"name": "team/robot"}),
    ("GET", "/admin/v1/tokens", None),
    ("POST", "/admin/v1/tokens", {"subject": "nsadmin"}),
    ("DELETE", "/admin/v1/tokens/0123456789abcdef", None),
    ("GET", "/admin/v1/rolebindings", None),
    ("POST", "/admin/v1/rolebindings", {"role": "cluster-admin", "subject": "nsadmin"}),
    ("DELETE", "/admin/v1/rolebindings", {"role": "admin", "subject": "nsadmin", "namespace": "team"}),
    ("GET", "/admin/v1/can-i?verb=get&resource=imagestreams/layers&namespace=team&as=nsadmin", None),
    ("GET", "/admin/v1/who-can?verb=get&resource=imagestreams/layers&namespace=team", None),
]


@pytest.fixture
async def admin(auth_app, accounts, connect) -> httpx.AsyncClient:
    person = await accounts.user("chief", ("cluster-admin", None))
    return connect(auth_app, headers={"Authorization": f"Bearer {person.token}"})


async def _call(c: httpx.AsyncClient, method: str, path: str, body: dict | None) -> httpx.Response:
    return await c.request(method, path, json=body) if body is not None else await c.request(method, path)


async def test_full_cycle_as_cluster_admin(auth_app, connect, admin, root):
    await push_image(root, "team/app", "v1")
    # Users and service accounts.
    r = await admin.post("/admin/v1/users", json={"name": "dave", "password": "dave's secret"})
    assert r.status_code == 201, r.text
    r = await admin.post("/admin/v1/serviceaccounts", json={"name": "team/robot"})
    assert r.status_code == 201, r.text
    assert r.json() == {"subject": "system:serviceaccount:team:robot"}
    r = await admin.get("/admin/v1/users")
    users = {u["name"]: u for u in r.json()["users"]}
    assert users["dave"]["password"] is True
    assert "dave's secret" not in r.text and "scrypt" not in r.text
    r = await admin.get("/admin/v1/serviceaccounts")
    assert [(s["namespace"], s["name"]) for s in r.json()["serviceaccounts"]] == [("team", "robot")]

    # A token, shown once; it authenticates at once.
    r = await admin.post("/admin/v1/tokens", json={"subject": "team/robot", "description": "ci", "expires": "1h"})
    assert r.status_code == 201, r.text
    created = r.json()
    secret, token_id = created["token"], created["id"]
    assert created["subject"] == "system:serviceaccount:team:robot"
    assert created["expires"] is not None
    robot = connect(auth_app, headers={"Authorization": f"Bearer {secret}"})
    assert (await robot.get("/v2/")).status_code == 200
    assert_error(await robot.get("/v2/team/app/tags/list"), 403, "DENIED")  # no role yet

    # A role binding, effective at once.
    binding = {"role": "system:image-puller", "subject": "team/robot", "namespace": "team"}
    r = await admin.post("/admin/v1/rolebindings", json=binding)
    assert r.status_code == 201, r.text
    assert r.json() == {"role": "registry-viewer", "subject": "system:serviceaccount:team:robot", "namespace": "team"}
    assert (await robot.get("/v2/team/app/tags/list")).status_code == 200
    r = await admin.get("/admin/v1/rolebindings")
    assert (
        r.json()["rolebindings"]
        and {
            "role": "registry-viewer",
            "subject": "system:serviceaccount:team:robot",
            "namespace": "team",
        }
        in r.json()["rolebindings"]
    )

    # can-i and who-can.
    params = {"verb": "get", "resource": "imagestreams/layers", "namespace": "team", "as": "team/robot"}
    r = await admin.get("/admin/v1/can-i", params=params)
    assert r.json() == {"allowed": True, "subject": "system:serviceaccount:team:robot"}
    r = await admin.get("/admin/v1/can-i", params={**params, "verb": "update"})
    assert r.json()["allowed"] is False
    del params["as"]
    r = await admin.get("/admin/v1/who-can", params=params)
    assert "system:serviceaccount:team:robot" in r.json()["subjects"]
    assert "chief" in r.json()["subjects"]

    # Listing tokens never shows a secret.
    r = await admin.get("/admin/v1/tokens", params={"subject": "team/robot"})
    listed = r.json()["tokens"]
    assert [t["id"] for t in listed] == [token_id]
    assert listed[0]["revoked"] is None and listed[0]["description"] == "ci"
    assert secret not in r.text

    # Removing the binding and revoking the token apply at once.
    r = await admin.request("DELETE", "/admin/v1/rolebindings", json=binding)
    assert r.status_code == 204, r.text
    assert_error(await robot.get("/v2/team/app/tags/list"), 403, "DENIED")
    r = await admin.delete(f"/admin/v1/tokens/{token_id}")
    assert r.status_code == 204, r.text
    assert_error(await robot.get("/v2/"), 401, "UNAUTHORIZED")
    r = await admin.get("/admin/v1/tokens", params={"subject": "team/robot"})
    assert r.json()["tokens"][0]["revoked"] is not None
    # The user's password works at once too.
    dave = connect(auth_app, headers={"Authorization": basic("dave", "dave's secret")})
    assert (await dave.get("/v2/")).status_code == 200


async def test_revoking_a_token_in_use_stops_it_at_once(auth_app, accounts, connect, admin, root):
    await push_image(root, "team/app", "v1")
    r = await admin.post("/admin/v1/users", json={"name": "erin"})
    assert r.status_code == 201
    await admin.post("/admin/v1/rolebindings", json={"role": "registry-editor", "subject": "erin", "namespace": "team"})
    r = await admin.post("/admin/v1/tokens", json={"subject": "erin"})
    secret, token_id = r.json()["token"], r.json()["id"]
    clients = [
        connect(auth_app, headers={"Authorization": f"Bearer {secret}"}),
        connect(auth_app, headers={"Authorization": basic("erin", secret)}),
    ]
    for c in clients:  # warm the token cache
        assert (await c.get("/v2/team/app/tags/list")).status_code == 200
    assert (await admin.delete(f"/admin/v1/tokens/{token_id}")).status_code == 204
    for c in clients:
        assert_error(await c.get("/v2/team/app/tags/list"), 401, "UNAUTHORIZED")
    # ...and it cannot be exchanged for a bearer JWT any more.
    dance = connect(auth_app, auth=TokenDance("erin", secret))
    assert_error(await dance.get("/v2/team/app/tags/list"), 401, "UNAUTHORIZED")


async def test_errors(admin):
    r = await admin.post("/admin/v1/users", json={"name": "frank"})
    assert r.status_code == 201
    assert_error(await admin.post("/admin/v1/users", json={"name": "system:masters"}), 400)
    assert_error(await admin.post("/admin/v1/users", json={}), 400)
    assert_error(await admin.post("/admin/v1/users", content=b"not json"), 400)
    assert_error(await admin.post("/admin/v1/users", json={"name": 7}), 400)
    assert_error(await admin.post("/admin/v1/tokens", json={"subject": "nobody-here"}), 404, "NOT_FOUND")
    assert_error(await admin.post("/admin/v1/tokens", json={"subject": "system:authenticated"}), 400)
    bad_role = {"role": "root", "subject": "frank", "namespace": "team"}
    assert_error(await admin.post("/admin/v1/rolebindings", json=bad_role), 400)
    missing = {"role": "admin", "subject": "frank", "namespace": "team"}
    assert_error(await admin.request("DELETE", "/admin/v1/rolebindings", json=missing), 404, "NOT_FOUND")
    assert_error(await admin.delete("/admin/v1/tokens/0123456789abcdef"), 404, "NOT_FOUND")
    assert_error(await admin.get("/admin/v1/can-i", params={"verb": "fly", "resource": "images", "as": "frank"}), 400)
    assert_error(await admin.get("/admin/v1/can-i", params={"verb": "get", "resource": "images"}), 400)
    # Creating what exists is a conflict, not a malformed request.
    assert_error(await admin.post("/admin/v1/users", json={"name": "frank"}), 409, "CONFLICT")
    assert (await admin.post("/admin/v1/serviceaccounts", json={"name": "team/robot"})).status_code == 201
    assert_error(await admin.post("/admin/v1/serviceaccounts", json={"name": "team/robot"}), 409, "CONFLICT")


# What a namespace admin (admin in `team`) may not do, and the check that refuses it.
NSADMIN_REFUSED = [
    ("GET", "/admin/v1/users", None, ("list", "users", None)),
    ("POST", "/admin/v1/users", {"name": "mallory"}, ("create", "users", None)),
    ("GET", "/admin/v1/serviceaccounts", None, ("list", "serviceaccounts", None)),
    ("POST", "/admin/v1/serviceaccounts", {"name": "team/robot"}, ("create", "serviceaccounts", None)),
    ("GET", "/admin/v1/tokens", None, ("list", "tokens", None)),
    ("POST", "/admin/v1/tokens", {"subject": "nsadmin"}, ("create", "tokens", None)),
    ("DELETE", "/admin/v1/tokens/0123456789abcdef", None, ("delete", "tokens", None)),
    ("GET", "/admin/v1/rolebindings", None, ("list", "rolebindings", None)),
    ("GET", "/admin/v1/rolebindings?namespace=other", None, ("list", "rolebindings", "other")),
    (
        "POST",
        "/admin/v1/rolebindings",
        {"role": "cluster-admin", "subject": "nsadmin"},
        ("create", "rolebindings", None),
    ),
    ("POST", "/admin/v1/rolebindings", {"role": "registry-viewer", "subject": "x"}, ("create", "rolebindings", None)),
    (
        "POST",
        "/admin/v1/rolebindings",
        {"role": "admin", "subject": "nsadmin", "namespace": "other"},
        ("create", "rolebindings", "other"),
    ),
    (
        "DELETE",
        "/admin/v1/rolebindings",
        {"role": "admin", "subject": "boss", "namespace": "other"},
        ("delete", "rolebindings", "other"),
    ),
    (
        "GET",
        "/admin/v1/can-i?verb=get&resource=imagestreams/layers&namespace=team&as=nsadmin",
        None,
        ("create", "subjectaccessreviews", None),
    ),
    (
        "GET",
        "/admin/v1/who-can?verb=get&resource=imagestreams/layers&namespace=team",
        None,
        ("create", "subjectaccessreviews", None),
    ),
]


async def test_namespace_admin_is_refused_everything_beyond_its_namespace_bindings(auth_app, accounts, connect):
    person = await accounts.user("nsadmin", ("admin", "team"))
    await accounts.user("boss", ("admin", "other"))
    c = connect(auth_app, headers={"Authorization": f"Bearer {person.token}"})
    for method, path, body, (verb, resource, namespace) in NSADMIN_REFUSED:
        error = assert_error(await _call(c, method, path, body), 403, "DENIED")
        expected = {"verb": verb, "resource": resource, "namespace": namespace, "subject": "nsadmin"}
        assert error["detail"] == expected, (method, path, body)
    # Nothing was created or removed.
    assert await accounts.store.list_service_accounts() == []
    assert sorted(u["name"] for u in await accounts.store.list_users()) == ["boss", "nsadmin"]
    assert sorted((b.role, b.subject, b.namespace) for b in await accounts.store.bindings()) == [
        ("admin", "boss", "other"),
        ("admin", "nsadmin", "team"),
    ]
    assert [t.subject for t in await accounts.store.list_tokens()] == ["nsadmin", "boss"]


async def test_namespace_admin_manages_bindings_in_its_namespace(auth_app, accounts, connect, root):
    await push_image(root, "team/app", "v1")
    person = await accounts.user("nsadmin", ("admin", "team"))
    dave = await accounts.user("dave")
    c = connect(auth_app, headers={"Authorization": f"Bearer {person.token}"})
    as_dave = connect(auth_app, headers={"Authorization": f"Bearer {dave.token}"})
    assert_error(await as_dave.post("/v2/team/app/blobs/uploads/"), 403, "DENIED")

    # Granting what it holds itself works, and applies at once.
    editor = {"role": "system:image-pusher", "subject": "dave", "namespace": "team"}
    r = await c.post("/admin/v1/rolebindings", json=editor)
    assert r.status_code == 201, r.text
    assert r.json() == {"role": "registry-editor", "subject": "dave", "namespace": "team"}
    assert (await as_dave.post("/v2/team/app/blobs/uploads/")).status_code == 202
    r = await c.get("/admin/v1/rolebindings", params={"namespace": "team"})
    assert r.status_code == 200, r.text
    assert sorted((b["role"], b["subject"]) for b in r.json()["rolebindings"]) == [
        ("admin", "nsadmin"),
        ("registry-editor", "dave"),
    ]
    assert all(b["namespace"] == "team" for b in r.json()["rolebindings"])

    # Granting a role above its own is refused, naming what it lacks.
    r = await c.post("/admin/v1/rolebindings", json={"role": "cluster-admin", "subject": "dave", "namespace": "team"})
    error = assert_error(r, 403, "DENIED")
    assert error["message"].startswith("nsadmin cannot grant role cluster-admin in namespace team: it lacks "), error
    for lacking in ("users", "tokens", "serviceaccounts", "subjectaccessreviews", "imagepruners", "registry/metrics"):
        assert lacking in error["message"], error
    assert "in namespace team" in parse_challenge(r.headers["WWW-Authenticate"])["error_description"]

    # Removing it again.
    r = await c.request("DELETE", "/admin/v1/rolebindings", json=editor)
    assert r.status_code == 204, r.text
    assert_error(await as_dave.post("/v2/team/app/blobs/uploads/"), 403, "DENIED")
    assert sorted((b.role, b.subject, b.namespace) for b in await accounts.store.bindings()) == [
        ("admin", "nsadmin", "team"),
        ("cluster-admin", "root", None),
    ]

    # Through the token dance, a bearer JWT never carries the admin API for a namespace admin.
    dance = TokenDance("nsadmin", person.token)
    jwt_client = connect(auth_app, auth=dance)
    error = assert_error(await jwt_client.post("/admin/v1/rolebindings", json=editor), 403, "DENIED")
    assert "present a long-lived token" in error["message"], error
    assert dance.fetches == [["registry:admin:*"]]


async def test_image_pruner_cannot_escalate(auth_app, accounts, connect):
    """Issue 9: a system:image-pruner account made itself cluster-admin and minted tokens for
    others, since every admin route was authorized as cluster-wide `delete images`."""
    pruner = await accounts.user("pruner", ("system:image-pruner", None))
    chief = await accounts.user("chief", ("cluster-admin", None))
    for c in (
        connect(auth_app, headers={"Authorization": f"Bearer {pruner.token}"}),
        connect(auth_app, headers={"Authorization": basic("pruner", pruner.token)}),
        connect(auth_app, auth=TokenDance("pruner", pruner.token)),
    ):
        for subject in ("p", "pruner"):
            r = await c.post("/admin/v1/rolebindings", json={"role": "cluster-admin", "subject": subject})
            error = assert_error(r, 403, "DENIED")
            assert error["detail"] == {
                "verb": "create",
                "resource": "rolebindings",
                "namespace": None,
                "subject": "pruner",
            }
        error = assert_error(await c.post("/admin/v1/tokens", json={"subject": "chief"}), 403, "DENIED")
        assert error["detail"] == {"verb": "create", "resource": "tokens", "namespace": None, "subject": "pruner"}
    assert sorted((b.role, b.subject) for b in await accounts.store.bindings()) == [
        ("cluster-admin", "chief"),
        ("system:image-pruner", "pruner"),
    ]
    assert [t.subject for t in await accounts.store.list_tokens()] == ["pruner", "chief"]
    # The token endpoint does not hand the pruner the admin scope; a cluster-admin gets it.
    for person, granted in ((pruner, []), (chief, [{"type": "registry", "name": "admin", "actions": ["*"]}])):
        c = connect(auth_app, headers={"Authorization": f"Bearer {person.token}"})
        r = await c.get("/openshift/token", params={"service": "okura-registry", "scope": "registry:admin:*"})
        assert jwt.decode(r.json()["token"], options={"verify_signature": False})["access"] == granted


async def test_a_jwt_with_the_admin_scope_is_checked_on_every_request(auth_app, accounts, connect):
    """The scope gets a request to the check; the check decides, at request time."""
    chief = await accounts.user("chief", ("cluster-admin", None))
    dance = TokenDance("chief", chief.token)
    c = connect(auth_app, auth=dance)
    assert (await c.get("/admin/v1/users")).status_code == 200
    await accounts.unbind("cluster-admin", "chief")
    error = assert_error(await c.get("/admin/v1/users"), 403, "DENIED")
    assert error["detail"] == {"verb": "list", "resource": "users", "namespace": None, "subject": "chief"}
    assert len(dance.fetches) == 1  # the same JWT, refused


async def test_anonymous_is_401(raw, anonymous):
    for method, path, body in ENDPOINTS:
        r = await _call(raw, method, path, body)
        assert_error(r, 401, "UNAUTHORIZED")
        assert parse_challenge(r.headers["WWW-Authenticate"])["scope"] == "registry:admin:*", (method, path)
        assert_error(await _call(anonymous, method, path, body), 401, "UNAUTHORIZED")


async def test_cluster_admin_through_the_token_dance(auth_app, accounts, connect):
    person = await accounts.user("chief", ("cluster-admin", None))
    dance = TokenDance("chief", person.token)
    c = connect(auth_app, auth=dance)
    r = await c.post("/admin/v1/users", json={"name": "gina"})
    assert r.status_code == 201, r.text
    assert dance.fetches == [["registry:admin:*"]]
    assert (await c.get("/admin/v1/users")).status_code == 200
    assert len(dance.fetches) == 1


async def test_admin_routes_do_not_exist_without_auth(make_app, connect):
    app = await make_app()
    r = await connect(app).get("/admin/v1/users")
    assert r.status_code == 404
    assert (await connect(app).get("/openshift/token")).status_code == 404


async def test_cli_can_i_and_who_can_know_the_admin_resources(auth_app, accounts):
    await accounts.user("chief", ("cluster-admin", None))
    await accounts.user("nsadmin", ("admin", "team"))
    code, out, err = await okura_cli(auth_app, "who-can", "create", "tokens")
    assert (code, out.split()) == (0, ["chief"]), err
    code, out, err = await okura_cli(auth_app, "who-can", "create", "rolebindings", "-n", "team")
    assert (code, sorted(out.split())) == (0, ["chief", "nsadmin"]), err
    code, out, _ = await okura_cli(auth_app, "can-i", "create", "serviceaccounts", "--as", "nsadmin")
    assert (code, out.strip()) == (1, "no")
    code, out, _ = await okura_cli(auth_app, "can-i", "create", "subjectaccessreviews", "--as", "chief")
    assert (code, out.strip()) == (0, "yes")
