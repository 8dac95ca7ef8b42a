"""Image streams and images with auth on: each request is its verb on its resource in its
namespace (a 403 Status naming them otherwise), lists across namespaces keep the namespaces where
the caller may list, images are cluster-admin's while image stream images show a namespace's own,
and anonymous callers get a 401 Status with a challenge."""

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
            f'imagestreams.image.openshift.io "{name}" is forbidden: viewer cannot get imagestreams in namespace b'
        )
        assert status["details"] == {"name": name, "group": "image.openshift.io", "kind": "imagestreams"}

    r = await client.get(f"{API}/namespaces/a/imagestreams")
    assert names(r.json()) == [("a", "app"), ("a", "mirror")]
    status = assert_status(await client.get(f"{API}/namespaces/b/imagestreams"), 403, "Forbidden")
    assert (
        status["message"]
        == "imagestreams.image.openshift.io is forbidden: viewer cannot list imagestreams in namespace b"
    )
    r = await client.get(f"{API}/imagestreams")
    # Logged-in callers keep what anonymous ones may do: the public namespace is listed too.
    assert names(r.json()) == [("a", "app"), ("a", "mirror"), ("public", "pub")]

    # Images are cluster-wide: cluster-admin's. A namespace's images are its image stream images.
    assert_status(await client.get(f"{API}/images/{seeded.only_a}"), 403, "Forbidden")
    r = await client.get(f"{API}/namespaces/a/imagestreamimages/app@{seeded.only_a}")
    assert r.status_code == 200 and r.json()["image"]["metadata"]["name"] == seeded.only_a
    # The same digest held by two streams is referenced through the one asked for.
    r = await client.get(f"{API}/namespaces/a/imagestreamimages/mirror@{seeded.shared}")
    assert r.json()["image"]["dockerImageReference"] == f"registry/a/mirror@{seeded.shared}"
    # An image the stream does not hold is as absent as one that does not exist.
    missing = sha256(b"never pushed")
    for digest in (seeded.only_b, missing):
        assert_status(await client.get(f"{API}/namespaces/a/imagestreamimages/app@{digest}"), 404, "NotFound")
    assert_status(await client.get(f"{API}/namespaces/b/imagestreamimages/secret@{seeded.only_b}"), 403, "Forbidden")


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
    assert_status(await client.get(f"{API}/namespaces/a/imagestreams"), 403, "Forbidden")
    assert_status(await client.get(f"{API}/images/{seeded.only_a}"), 403, "Forbidden")
    assert_status(await client.get(f"{API}/namespaces/a/imagestreams/app"), 403, "Forbidden")


async def test_anonymous_gets_a_401_status_with_a_challenge(raw, seeded: Seeded):
    paths = {
        f"{API}/imagestreams": None,
        f"{API}/namespaces/a/imagestreams": "registry:api:*",
        # The API's scope: a bearer JWT for it reaches the API with its subject's own roles.
        f"{API}/namespaces/public/imagestreams/pub": "registry:api:*",
        f"{API}/images/{seeded.public}": "registry:api:*",
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
    r = await anonymous.get(f"{API}/namespaces/public/imagestreamimages/pub@{seeded.public}")
    assert r.status_code == 200, r.text
    assert_status(await anonymous.get(f"{API}/images/{seeded.public}"), 401, "Unauthorized")
    assert_status(await anonymous.get(f"{API}/namespaces/a/imagestreams/app"), 401, "Unauthorized")
