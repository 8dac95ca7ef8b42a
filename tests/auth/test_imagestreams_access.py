"""Image streams and images with auth on: a stream needs a pull's permission (403 Status
otherwise), lists show only what the caller may pull, an image held only where the caller may not
pull is 404 (as if it did not exist), and anonymous callers get a 401 Status with a challenge."""

from __future__ import annotations

import json
from dataclasses import dataclass

import pytest
import pytest_asyncio

from tests.support.auth import Accounts, Connect, Person, TokenDance, login, parse_challenge
from tests.support.digests import sha256
from tests.support.http import assert_status, push_image

API = "/apis/image.openshift.io/v1"


@dataclass
class Seeded:
    only_a: str
    only_b: str
    shared: str  # pushed to b/shared first, then to a/mirror
    public: str


@pytest_asyncio.fixture
async def seeded(auth_app, accounts: Accounts, root) -> Seeded:
    only_a, _ = await push_image(root, "a/app", "v1")
    only_b, _ = await push_image(root, "b/secret", "v1")
    shared, body = await push_image(root, "b/shared", "v1")
    for blob in [json.loads(body)["config"], *json.loads(body)["layers"]]:
        r = await root.post("/v2/a/mirror/blobs/uploads/", params={"mount": blob["digest"], "from": "b/shared"})
        assert r.status_code == 201, r.text
    r = await root.put(
        "/v2/a/mirror/manifests/v1", content=body, headers={"Content-Type": json.loads(body)["mediaType"]}
    )
    assert r.status_code == 201, r.text
    public, _ = await push_image(root, "public/pub", "v1")
    await accounts.make_public("public")
    return Seeded(only_a, only_b, shared, public)


@pytest_asyncio.fixture
async def viewer(accounts: Accounts) -> Person:
    return await accounts.user("viewer", ("registry-viewer", "a"))


def names(listing: dict) -> list[tuple[str, str]]:
    assert listing["kind"] == "ImageStreamList"
    return [(s["metadata"]["namespace"], s["metadata"]["name"]) for s in listing["items"]]


@pytest.mark.parametrize("kind", ["bearer-token", "jwt"])
async def test_viewer_sees_its_namespace_only(auth_app, connect: Connect, seeded: Seeded, viewer: Person, kind):
    client = login(connect, auth_app, viewer, kind)

    r = await client.get(f"{API}/namespaces/a/imagestreams/app")
    assert r.status_code == 200, r.text
    assert r.json()["status"]["tags"][0]["items"][0]["image"] == seeded.only_a

    for name in ("secret", "does-not-exist"):  # refused alike: existence in b is not revealed
        status = assert_status(await client.get(f"{API}/namespaces/b/imagestreams/{name}"), 403, "Forbidden")
        assert status["message"] == (
            f'imagestreams.image.openshift.io "{name}" is forbidden: '
            "viewer cannot get imagestreams/layers in namespace b"
        )
        assert status["details"] == {"name": name, "group": "image.openshift.io", "kind": "imagestreams"}

    r = await client.get(f"{API}/namespaces/a/imagestreams")
    assert names(r.json()) == [("a", "app"), ("a", "mirror")]
    r = await client.get(f"{API}/namespaces/b/imagestreams")
    assert r.status_code == 200 and names(r.json()) == []  # filtered, not refused
    r = await client.get(f"{API}/imagestreams")
    # Logged-in callers keep what anonymous ones may do: the public namespace is listed too.
    assert names(r.json()) == [("a", "app"), ("a", "mirror"), ("public", "pub")]

    assert (await client.get(f"{API}/images/{seeded.only_a}")).status_code == 200
    # An image only in b is exactly as absent as one that does not exist.
    hidden = assert_status(await client.get(f"{API}/images/{seeded.only_b}"), 404, "NotFound")
    missing = sha256(b"never pushed")
    absent = assert_status(await client.get(f"{API}/images/{missing}"), 404, "NotFound")
    assert hidden["message"].replace(seeded.only_b, missing) == absent["message"]
    # A digest in both namespaces is answered, referenced where the caller may pull it.
    r = await client.get(f"{API}/images/{seeded.shared}")
    assert r.status_code == 200
    assert r.json()["dockerImageReference"] == f"registry/a/mirror@{seeded.shared}"


async def test_cluster_admin_sees_every_namespace(root, seeded: Seeded):
    r = await root.get(f"{API}/imagestreams")
    assert names(r.json()) == [("a", "app"), ("a", "mirror"), ("b", "secret"), ("b", "shared"), ("public", "pub")]
    r = await root.get(f"{API}/images/{seeded.shared}")
    assert r.json()["dockerImageReference"] == f"registry/b/shared@{seeded.shared}"  # where it was pushed first
    assert (await root.get(f"{API}/namespaces/b/imagestreams/secret")).status_code == 200


async def test_a_caller_without_roles_sees_nothing(auth_app, accounts: Accounts, connect: Connect, seeded: Seeded):
    nobody = await accounts.user("nobody")
    client = login(connect, auth_app, nobody, "bearer-token")
    assert names((await client.get(f"{API}/imagestreams")).json()) == [("public", "pub")]
    assert names((await client.get(f"{API}/namespaces/a/imagestreams")).json()) == []
    assert_status(await client.get(f"{API}/images/{seeded.only_a}"), 404, "NotFound")
    assert_status(await client.get(f"{API}/namespaces/a/imagestreams/app"), 403, "Forbidden")


async def test_anonymous_gets_a_401_status_with_a_challenge(raw, seeded: Seeded):
    paths = {
        f"{API}/imagestreams": None,
        f"{API}/namespaces/a/imagestreams": None,
        f"{API}/namespaces/public/imagestreams/pub": "repository:public/pub:pull",
        f"{API}/images/{seeded.public}": None,
    }
    for path, scope in paths.items():
        r = await raw.get(path)
        status = assert_status(r, 401, "Unauthorized")
        assert status["message"]
        challenge = parse_challenge(r.headers.get("WWW-Authenticate"))
        assert challenge is not None, r.headers
        assert challenge["realm"] == "http://registry/openshift/token"
        assert challenge.get("scope") == scope
    r = await raw.get(f"{API}/images/{seeded.public}", headers={"Authorization": "Bearer not-a-token"})
    assert_status(r, 401, "Unauthorized")
    assert r.headers["WWW-Authenticate"].startswith("Bearer ")


async def test_anonymous_token_sees_public_namespaces(anonymous, seeded: Seeded):
    """An anonymous bearer JWT (what clients fetch after the challenge) sees public namespaces."""
    assert isinstance(anonymous.auth, TokenDance)
    r = await anonymous.get(f"{API}/imagestreams")
    assert names(r.json()) == [("public", "pub")]
    r = await anonymous.get(f"{API}/namespaces/public/imagestreams/pub")
    assert r.status_code == 200 and r.json()["metadata"]["name"] == "pub"
    assert (await anonymous.get(f"{API}/images/{seeded.public}")).status_code == 200
    assert_status(await anonymous.get(f"{API}/images/{seeded.only_a}"), 404, "NotFound")
    assert_status(await anonymous.get(f"{API}/namespaces/a/imagestreams/app"), 401, "Unauthorized")
