"""The permission matrix through HTTP, for each kind of credential: Basic with a token as the
password, Basic user+password, a raw bearer token, and a bearer JWT from the token dance."""

from __future__ import annotations

import json
import logging
import secrets
from dataclasses import dataclass, field
from typing import Any

import httpx
import jwt
import pytest
import pytest_asyncio

from auth.roles import ROLES, Role
from tests.support.auth import AUTH, KINDS, Accounts, Connect, Person, TokenDance, login, parse_challenge
from tests.support.digests import sha256
from tests.support.http import assert_error, push_image, relative
from tests.support.media_types import OCI_MANIFEST

REALM = "http://registry/openshift/token"
SERVICE = "okura-registry"


def assert_denied(response: httpx.Response, verb: str, resource: str, namespace: str | None, subject: str) -> None:
    """403 DENIED naming the verb, resource and namespace the caller lacks."""
    error = assert_error(response, 403, "DENIED")
    where = f"in namespace {namespace}" if namespace else "cluster-wide"
    assert f"{verb} {resource} {where}" in error["message"], error
    assert error["detail"] == {"verb": verb, "resource": resource, "namespace": namespace, "subject": subject}


def config_digest(manifest: bytes) -> str:
    return json.loads(manifest)["config"]["digest"]


def layer_digest(manifest: bytes) -> str:
    return json.loads(manifest)["layers"][0]["digest"]


@dataclass
class World:
    """team/app and other/app (tag v1), pushed by a cluster-admin, and people with roles in `team`."""

    app: Any
    connect: Connect
    kind: str
    people: dict[str, Person]
    images: dict[str, tuple[str, bytes]] = field(default_factory=dict)

    def client(self, who: str) -> httpx.AsyncClient:
        return login(self.connect, self.app, self.people[who], self.kind)


@pytest.fixture(params=KINDS)
def kind(request) -> str:
    return request.param


@pytest_asyncio.fixture
async def world(auth_app, accounts: Accounts, connect, root, kind) -> World:
    # Passwords cost a scrypt hash each; only the user+password kind needs them.
    def password() -> str | None:
        return "pw-" + secrets.token_hex(8) if kind == "basic-password" else None

    people = {
        "viewer": await accounts.user("viewer", ("registry-viewer", "team"), password=password()),
        "editor": await accounts.user("editor", ("system:image-pusher", "team"), password=password()),
        "admin": await accounts.user("admin", ("admin", "team"), password=password()),
        "outsider": await accounts.user("outsider", ("registry-editor", "other"), password=password()),
        "boss": await accounts.user("boss", ("cluster-admin", None), password=password()),
    }
    w = World(auth_app, connect, kind, people)
    for repo in ("team/app", "other/app"):
        w.images[repo] = await push_image(root, repo, "v1")
    return w


# -- the matrix, per credential kind ------------------------------------------------------------


async def test_viewer_pulls_but_push_and_delete_are_denied(world):
    c = world.client("viewer")
    digest, body = world.images["team/app"]
    r = await c.get("/v2/team/app/manifests/v1", headers={"Accept": OCI_MANIFEST})
    assert r.status_code == 200, r.text
    assert r.content == body
    r = await c.get(f"/v2/team/app/blobs/{config_digest(body)}")
    assert r.status_code == 200
    assert sha256(r.content) == config_digest(body)
    r = await c.get("/v2/team/app/tags/list")
    assert r.status_code == 200
    assert r.json()["tags"] == ["v1"]
    r = await c.get(f"/v2/team/app/referrers/{digest}")
    assert r.status_code == 200

    assert_denied(await c.post("/v2/team/app/blobs/uploads/"), "update", "imagestreams/layers", "team", "viewer")
    r = await c.put("/v2/team/app/manifests/v2", content=body, headers={"Content-Type": OCI_MANIFEST})
    assert_denied(r, "update", "imagestreams/layers", "team", "viewer")
    assert_denied(await c.delete(f"/v2/team/app/manifests/{digest}"), "delete", "images", "team", "viewer")
    assert_denied(await c.delete("/v2/team/app/manifests/v1"), "delete", "images", "team", "viewer")
    r = await c.delete(f"/v2/team/app/blobs/{layer_digest(body)}")
    assert_denied(r, "delete", "images", "team", "viewer")
    # Nothing changed.
    r = await c.get("/v2/team/app/manifests/v1", headers={"Accept": OCI_MANIFEST})
    assert r.status_code == 200


async def test_editor_pushes_pulls_and_deletes_only_in_its_namespace(world):
    c = world.client("editor")
    # A new repository (needs create imagestreams, which registry-editor has) and an existing one.
    new_digest, new_body = await push_image(c, "team/new", "v1")
    await push_image(c, "team/app", "v2")
    r = await c.get(f"/v2/team/new/manifests/{new_digest}")
    assert r.status_code == 200
    assert r.content == new_body
    r = await c.get("/v2/team/app/tags/list")
    assert r.json()["tags"] == ["v1", "v2"]
    # Chunked upload through the session URL keeps working with the same credentials.
    r = await c.post("/v2/team/app/blobs/uploads/")
    assert r.status_code == 202, r.text
    data = b"chunk" * 10
    r = await c.patch(relative(r.headers["Location"]), content=data, headers={"Content-Range": f"0-{len(data) - 1}"})
    assert r.status_code == 202, r.text
    r = await c.put(relative(r.headers["Location"]), params={"digest": sha256(data)})
    assert r.status_code == 201, r.text

    # Deletes in its own namespace (tags, manifests, blob links), never in another one.
    assert (await c.delete("/v2/team/new/manifests/v1")).status_code == 202
    assert (await c.get(f"/v2/team/new/manifests/{new_digest}")).status_code == 200  # untag only
    assert (await c.delete(f"/v2/team/new/manifests/{new_digest}")).status_code == 202
    assert (await c.get(f"/v2/team/new/manifests/{new_digest}")).status_code == 404
    digest, body = world.images["team/app"]
    assert_denied(await c.delete("/v2/other/app/manifests/v1"), "delete", "images", "other", "editor")
    r = await c.delete(f"/v2/other/app/blobs/{layer_digest(body)}")
    assert_denied(r, "delete", "images", "other", "editor")
    assert (await c.get(f"/v2/team/app/manifests/{digest}")).status_code == 200


async def test_namespace_admin_deletes_manifests_tags_and_blobs(world):
    c = world.client("admin")
    digest, body = world.images["team/app"]
    extra_digest, _ = await push_image(c, "team/app", "v2")
    # Tag delete: the tag goes, the manifest stays.
    r = await c.delete("/v2/team/app/manifests/v2")
    assert r.status_code == 202, r.text
    assert_error(await c.get("/v2/team/app/manifests/v2"), 404, "MANIFEST_UNKNOWN")
    assert (await c.get(f"/v2/team/app/manifests/{extra_digest}")).status_code == 200
    # Manifest delete by digest, and a blob link.
    r = await c.delete(f"/v2/team/app/manifests/{digest}")
    assert r.status_code == 202, r.text
    assert_error(await c.get("/v2/team/app/manifests/v1"), 404, "MANIFEST_UNKNOWN")
    r = await c.delete(f"/v2/team/app/blobs/{layer_digest(body)}")
    assert r.status_code == 202, r.text
    assert_error(await c.get(f"/v2/team/app/blobs/{layer_digest(body)}"), 404, "BLOB_UNKNOWN")
    # Admin of team is nobody in other.
    other_digest, _ = world.images["other/app"]
    assert_denied(await c.delete(f"/v2/other/app/manifests/{other_digest}"), "delete", "images", "other", "admin")


async def test_nothing_in_another_namespace(world):
    c = world.client("outsider")  # registry-editor in `other` only
    digest, body = world.images["team/app"]
    for path in (
        "/v2/team/app/manifests/v1",
        f"/v2/team/app/manifests/{digest}",
        f"/v2/team/app/blobs/{config_digest(body)}",
        "/v2/team/app/tags/list",
        f"/v2/team/app/referrers/{digest}",
    ):
        assert_denied(await c.get(path), "get", "imagestreams/layers", "team", "outsider")
    # Existing or not, the answer is the same: nothing about `team` leaks.
    a = await c.get("/v2/team/app/manifests/v1")
    b = await c.get("/v2/team/nonexistent/manifests/v1")
    assert a.status_code == b.status_code == 403
    assert a.json()["errors"][0]["message"] == b.json()["errors"][0]["message"]
    assert_denied(await c.post("/v2/team/app/blobs/uploads/"), "get", "imagestreams/layers", "team", "outsider")
    r = await c.put("/v2/team/app/manifests/v9", content=body, headers={"Content-Type": OCI_MANIFEST})
    assert r.status_code == 403
    assert_denied(await c.delete(f"/v2/team/app/manifests/{digest}"), "delete", "images", "team", "outsider")
    # ...while its own namespace works.
    assert (await c.get("/v2/other/app/manifests/v1")).status_code == 200
    r = await c.get("/v2/_catalog")
    assert r.status_code == 200
    assert r.json()["repositories"] == ["other/app"]


async def test_cluster_admin_may_do_everything(world):
    c = world.client("boss")
    for repo in ("team/app", "other/app"):
        digest, _ = world.images[repo]
        assert (await c.get(f"/v2/{repo}/manifests/v1")).status_code == 200
        await push_image(c, repo, "v2")
        assert (await c.delete(f"/v2/{repo}/manifests/v2")).status_code == 202
        assert (await c.delete(f"/v2/{repo}/manifests/{digest}")).status_code == 202
    await push_image(c, "brand-new/repo", "v1")
    r = await c.get("/v2/_catalog")
    assert r.json()["repositories"] == ["brand-new/repo", "other/app", "team/app"]


async def test_a_refusal_is_403_for_every_method_with_the_reason_in_the_challenge(world):
    """A known caller lacking the permission gets 403 for HEAD too (a HEAD answer has no body, so
    the reason also rides in an RFC 6750 insufficient_scope challenge, which docker prints)."""
    c = world.client("outsider")
    digest, body = world.images["team/app"]
    reason = "denied: outsider cannot get imagestreams/layers in namespace team"
    for path in (
        "/v2/team/app/manifests/v1",
        f"/v2/team/app/manifests/{digest}",
        f"/v2/team/app/blobs/{config_digest(body)}",
        "/v2/team/nonexistent/blobs/sha256:" + "0" * 64,
    ):
        for method in ("HEAD", "GET"):
            r = await c.request(method, path)
            assert r.status_code == 403, (method, path, r.status_code)
            assert parse_challenge(r.headers["WWW-Authenticate"]) == {
                "realm": REALM,
                "service": SERVICE,
                "scope": "repository:team/app:pull" if "/app/" in path else "repository:team/nonexistent:pull",
                "error": "insufficient_scope",
                "error_description": reason,
            }, (method, path)
        assert_denied(r, "get", "imagestreams/layers", "team", "outsider")
    r = await c.delete(f"/v2/team/app/manifests/{digest}")
    assert parse_challenge(r.headers["WWW-Authenticate"])["error_description"] == (
        "denied: outsider cannot delete images in namespace team"
    )


async def test_anonymous_head_is_401_with_a_plain_challenge(auth_app, raw, root):
    digest, _ = await push_image(root, "team/app", "v1")
    for path in ("/v2/team/app/manifests/v1", f"/v2/team/app/blobs/{digest}"):
        r = await raw.head(path)
        assert r.status_code == 401
        assert r.headers["WWW-Authenticate"] == (
            f'Bearer realm="{REALM}",service="{SERVICE}",scope="repository:team/app:pull"'
        )


@pytest.mark.parametrize("kind", KINDS, indirect=True)
async def test_metrics_need_get_registry_metrics(world):
    r = await world.client("editor").get("/metrics")
    assert_denied(r, "get", "registry/metrics", None, "editor")
    r = await world.client("admin").get("/metrics")  # a namespace admin is not a cluster-wide role
    assert_denied(r, "get", "registry/metrics", None, "admin")
    r = await world.client("boss").get("/metrics")
    assert r.status_code == 200, r.text
    assert b"# HELP" in r.content


async def test_wrong_password_is_401(auth_app, accounts, connect):
    await accounts.user("alice", ("registry-viewer", "team"), password="correct horse")
    c = connect(auth_app, headers={"Authorization": "Basic " + _b64("alice:wrong horse")})
    error = assert_error(await c.get("/v2/team/app/tags/list"), 401, "UNAUTHORIZED")
    assert "wrong horse" not in json.dumps(error)


def _b64(text: str) -> str:
    import base64

    return base64.b64encode(text.encode()).decode()


# -- creating repositories ----------------------------------------------------------------------


async def test_creating_a_repository_needs_create_imagestreams(auth_app, accounts, connect, root, monkeypatch):
    """No built-in role has `update imagestreams/layers` without `create imagestreams`, so the test
    adds one (it exists only for this test) to show the two checks are separate."""
    layers = Role("layer-pusher", ((frozenset({"get", "update"}), frozenset({"imagestreams/layers"})),), "test-only")
    monkeypatch.setitem(ROLES, "layer-pusher", layers)
    pusher = await accounts.user("pusher", ("layer-pusher", "team"))
    await push_image(root, "team/app", "v1")

    c = connect(auth_app, headers={"Authorization": f"Bearer {pusher.token}"})
    assert_denied(await c.post("/v2/team/fresh/blobs/uploads/"), "create", "imagestreams", "team", "pusher")
    await push_image(c, "team/app", "v2")  # the repository exists: update is enough
    # The token endpoint downscopes the same way.
    dance = TokenDance("pusher", pusher.token)
    c = connect(auth_app, auth=dance)
    assert_denied(await c.post("/v2/team/fresh/blobs/uploads/"), "create", "imagestreams", "team", "pusher")
    assert _access(dance.last_token) == [{"type": "repository", "name": "team/fresh", "actions": ["pull"]}]
    r = await c.post("/v2/team/app/blobs/uploads/")
    assert r.status_code == 202, r.text
    assert _access(dance.last_token) == [{"type": "repository", "name": "team/app", "actions": ["pull", "push"]}]
    # An editor creates repositories.
    editor = await accounts.user("editor", ("registry-editor", "team"))
    c = connect(auth_app, headers={"Authorization": f"Bearer {editor.token}"})
    assert (await c.post("/v2/team/fresh/blobs/uploads/")).status_code == 202


def _access(token: str | None) -> list[dict[str, Any]]:
    assert token
    return jwt.decode(token, options={"verify_signature": False})["access"]


# -- public namespaces and anonymous callers ------------------------------------------------------


async def test_public_namespace_is_pullable_anonymously_but_not_pushable(auth_app, accounts, root, anonymous, raw):
    await accounts.make_public("pub")
    digest, body = await push_image(root, "pub/app", "v1")
    await push_image(root, "team/app", "v1")

    r = await anonymous.get("/v2/pub/app/manifests/v1", headers={"Accept": OCI_MANIFEST})
    assert r.status_code == 200, r.text
    assert r.content == body
    assert (await anonymous.get(f"/v2/pub/app/blobs/{config_digest(body)}")).status_code == 200
    assert (await anonymous.get("/v2/pub/app/tags/list")).json()["tags"] == ["v1"]
    assert _sub(anonymous.auth.last_token) == "system:anonymous"

    # Push and delete: the anonymous token only carries pull, and anonymous callers get 401.
    r = await anonymous.post("/v2/pub/app/blobs/uploads/")
    assert_error(r, 401, "UNAUTHORIZED")
    assert parse_challenge(r.headers["WWW-Authenticate"])["scope"] == "repository:pub/app:pull,push"
    r = await anonymous.put("/v2/pub/app/manifests/v2", content=body, headers={"Content-Type": OCI_MANIFEST})
    assert_error(r, 401, "UNAUTHORIZED")
    assert_error(await anonymous.delete(f"/v2/pub/app/manifests/{digest}"), 401, "UNAUTHORIZED")
    # A namespace that is not public: 401 (log in), not a hint about what is there.
    assert_error(await anonymous.get("/v2/team/app/manifests/v1"), 401, "UNAUTHORIZED")

    # Without any token, even a public repository answers 401 with a challenge (the dance starts).
    r = await raw.get("/v2/pub/app/manifests/v1")
    assert_error(r, 401, "UNAUTHORIZED")
    assert r.headers["WWW-Authenticate"] == (
        f'Bearer realm="{REALM}",service="{SERVICE}",scope="repository:pub/app:pull"'
    )
    # The anonymous token is limited to what system:unauthenticated may do.
    r = await raw.get(
        "/openshift/token",
        params=[
            ("service", SERVICE),
            ("scope", "repository:pub/app:pull,push,delete"),
            ("scope", "repository:team/app:pull"),
        ],
    )
    assert r.status_code == 200, r.text
    assert _access(r.json()["token"]) == [{"type": "repository", "name": "pub/app", "actions": ["pull"]}]
    assert _sub(r.json()["token"]) == "system:anonymous"


def _sub(token: str | None) -> str:
    assert token
    return jwt.decode(token, options={"verify_signature": False})["sub"]


# -- the catalog ----------------------------------------------------------------------------------


async def test_catalog_lists_only_what_the_caller_may_pull(auth_app, accounts, connect, root, anonymous):
    alice = await accounts.user("alice", ("registry-editor", "team-a"))
    bob = await accounts.user("bob", ("registry-viewer", "team-b"))
    carol = await accounts.user("carol", ("registry-viewer", None))  # cluster-wide list imagestreams
    await accounts.make_public("pub")
    for repo in ("team-a/x", "team-a/y", "team-b/z", "pub/p", "other/q"):
        await push_image(root, repo, "v1")
    everything = ["other/q", "pub/p", "team-a/x", "team-a/y", "team-b/z"]

    async def catalog(c: httpx.AsyncClient, **params: Any) -> httpx.Response:
        r = await c.get("/v2/_catalog", params=params)
        assert r.status_code == 200, r.text
        return r

    def bearer(p: Person) -> httpx.AsyncClient:
        return connect(auth_app, headers={"Authorization": f"Bearer {p.token}"})

    # Public namespaces stay visible after logging in: logging in never takes access away.
    assert (await catalog(bearer(alice))).json()["repositories"] == ["pub/p", "team-a/x", "team-a/y"]
    assert (await catalog(bearer(bob))).json()["repositories"] == ["pub/p", "team-b/z"]
    assert (await catalog(root)).json()["repositories"] == everything
    assert (await catalog(bearer(carol))).json()["repositories"] == everything
    assert (await catalog(anonymous)).json()["repositories"] == ["pub/p"]
    # Through the token dance, the same view.
    dance = connect(auth_app, auth=TokenDance("alice", alice.token))
    assert (await catalog(dance)).json()["repositories"] == ["pub/p", "team-a/x", "team-a/y"]
    # Pagination counts only visible repositories.
    r = await catalog(bearer(alice), n=2)
    assert r.json()["repositories"] == ["pub/p", "team-a/x"]
    assert "Link" in r.headers
    r = await catalog(bearer(alice), n=2, last="team-a/x")
    assert r.json()["repositories"] == ["team-a/y"]
    assert "Link" not in r.headers


# -- names, open endpoints, the challenge -----------------------------------------------------------


async def test_single_component_names_are_name_invalid(auth_app, root, raw):
    for c in (root, raw):
        for method, path in (
            ("GET", "/v2/app/manifests/latest"),
            ("GET", "/v2/app/tags/list"),
            ("POST", "/v2/app/blobs/uploads/"),
            ("DELETE", "/v2/app/manifests/latest"),
        ):
            error = assert_error(await c.request(method, path), 400, "NAME_INVALID")
            assert "namespace" in error["message"], error
    # Asking the token endpoint for such a scope grants nothing, without an error.
    r = await root.get("/openshift/token", params={"service": SERVICE, "scope": "repository:app:pull,push"})
    assert r.status_code == 200
    assert _access(r.json()["token"]) == []


async def test_healthz_stays_open(raw):
    r = await raw.get("/healthz")
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "ok"
    assert (await raw.head("/healthz")).status_code == 200


CHALLENGES = [
    ("GET", "/v2/", None),
    ("HEAD", "/v2/", None),
    ("GET", "/v2/team/app/manifests/v1", "repository:team/app:pull"),
    ("HEAD", "/v2/team/app/blobs/sha256:" + "0" * 64, "repository:team/app:pull"),
    ("GET", "/v2/team/app/tags/list", "repository:team/app:pull"),
    ("POST", "/v2/team/app/blobs/uploads/", "repository:team/app:pull,push"),
    ("PUT", "/v2/team/app/manifests/v1", "repository:team/app:pull,push"),
    ("DELETE", "/v2/team/app/manifests/v1", "repository:team/app:delete"),
    ("GET", "/v2/_catalog", "registry:catalog:*"),
    ("GET", "/metrics", "registry:metrics:get"),
    ("GET", "/admin/v1/users", "registry:admin:*"),
]


async def test_no_credentials_get_the_exact_challenge(raw):
    for method, path, scope in CHALLENGES:
        r = await raw.request(method, path)
        assert r.status_code == 401, (method, path)
        assert_error(r, 401, "UNAUTHORIZED")
        expected = f'Bearer realm="{REALM}",service="{SERVICE}"' + (f',scope="{scope}"' if scope else "")
        assert r.headers["WWW-Authenticate"] == expected, (method, path)


async def test_challenge_uses_the_configured_base_url_and_realm(make_app, connect):
    app = await make_app(auth=AUTH, http={"base_url": "https://registry.example.com/"})
    r = await connect(app).get("/v2/")
    assert r.headers["WWW-Authenticate"] == (
        f'Bearer realm="https://registry.example.com/openshift/token",service="{SERVICE}"'
    )
    app = await make_app(auth={**AUTH, "realm": "https://sso.example.com/token", "service": "svc"})
    r = await connect(app).get("/v2/")
    assert r.headers["WWW-Authenticate"] == 'Bearer realm="https://sso.example.com/token",service="svc"'


async def test_version_check_with_the_token_dance(auth_app, accounts, connect):
    editor = await accounts.user("editor", ("registry-editor", "team"))
    dance = TokenDance("editor", editor.token)
    c = connect(auth_app, auth=dance)
    r = await c.get("/v2/")
    assert r.status_code == 200, r.text
    assert r.json() == {}
    assert r.headers["Docker-Distribution-API-Version"] == "registry/2.0"
    assert len(dance.fetches) == 1
    assert (await c.head("/v2/")).status_code == 200
    # Static credentials work as well.
    c = connect(auth_app, headers={"Authorization": f"Bearer {editor.token}"})
    assert (await c.get("/v2/")).status_code == 200


async def test_token_endpoint_answer(auth_app, accounts, connect):
    editor = await accounts.user("editor", ("registry-editor", "team"))
    c = connect(auth_app, headers={"Authorization": f"Bearer {editor.token}"})
    r = await c.get("/openshift/token", params={"service": SERVICE, "scope": "repository:team/app:pull,push"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert set(body) == {"token", "access_token", "expires_in", "issued_at"}
    assert body["token"] == body["access_token"]
    assert body["expires_in"] == 300
    assert editor.token not in r.text
    assert r.headers["Cache-Control"] == "no-store"
    claims = jwt.decode(body["token"], options={"verify_signature": False})
    assert claims["sub"] == "editor"
    assert claims["aud"] == SERVICE
    assert claims["access"] == [{"type": "repository", "name": "team/app", "actions": ["pull", "push"]}]


async def test_service_account_tokens_work(auth_app, accounts, connect, root):
    robot = await accounts.service_account("team/robot", ("registry-editor", "team"))
    await push_image(root, "team/app", "v1")
    for c in (
        connect(auth_app, headers={"Authorization": f"Bearer {robot.token}"}),
        connect(auth_app, auth=TokenDance("robot", robot.token)),
    ):
        assert (await c.get("/v2/team/app/manifests/v1")).status_code == 200
        await push_image(c, "team/app", "v2")
        r = await c.get("/v2/other/app/tags/list")
        assert_denied(r, "get", "imagestreams/layers", "other", "system:serviceaccount:team:robot")


async def test_access_log_names_the_subject(make_app, connect, caplog):
    app = await make_app(auth=AUTH, log={"access_log": True})
    editor = await Accounts(app).user("editor", ("registry-editor", "team"))
    caplog.set_level(logging.INFO, logger="okura.access")
    c = connect(app, headers={"Authorization": f"Bearer {editor.token}"})
    await c.get("/v2/team/app/tags/list")
    await connect(app).get("/v2/")
    records = [r for r in caplog.records if r.name == "okura.access"]
    subjects = {(r.path, r.status): r.subject for r in records}
    assert subjects[("/v2/team/app/tags/list", 404)] == "editor"
    assert subjects[("/v2/", 401)] == "system:anonymous"


async def test_public_namespace_stays_pullable_after_logging_in(auth_app, accounts, connect, root):
    """Logging in never takes access away: a user with no role anywhere still pulls what
    anonymous callers may pull, through Basic credentials and through the token dance."""
    await accounts.make_public("pub")
    _, body = await push_image(root, "pub/app", "v1")
    await push_image(root, "team/app", "v1")
    nobody = await accounts.user("nobody")
    for client in (
        connect(auth_app, auth=httpx.BasicAuth("nobody", nobody.token)),
        connect(auth_app, auth=TokenDance("nobody", nobody.token)),
    ):
        r = await client.get("/v2/pub/app/manifests/v1", headers={"Accept": OCI_MANIFEST})
        assert r.status_code == 200, r.text
        assert r.content == body
        assert_error(await client.get("/v2/team/app/manifests/v1", headers={"Accept": OCI_MANIFEST}), 403, "DENIED")
        assert (await client.post("/v2/pub/app/blobs/uploads/")).status_code == 403
