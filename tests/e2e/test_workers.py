"""`okura serve --workers 2`: several processes share the data dir and the SQLite database.
Clients open one connection per request, so their requests land on both workers: writes must
not collide and a tag moved or deleted through one worker must be seen by the other at once."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from tests.support.clients import ClientError
from tests.support.images import build_image, random_layers
from tests.support.media_types import ALL_MANIFEST_TYPES
from tests.support.registries import start_registry

pytestmark = pytest.mark.e2e

WORKERS = 2


@pytest.fixture(scope="module")
def registry(tmp_path_factory, blob_store):
    yield from start_registry(tmp_path_factory.mktemp("okura-workers"), "--workers", str(WORKERS), store=blob_store)


@pytest.fixture(scope="module")
def images(clients):
    return [
        build_image(clients, f"localhost/e2e/workers-{i}", random_layers([[80_000], [20_000]], f"w{i}"), fmt=fmt)
        for i, fmt in enumerate(["docker", "oci", "oci"])
    ]


def fresh_get(registry, path: str) -> httpx.Response:
    """A GET on a new connection, like c/image and dockerd send them."""
    headers = [("Accept", t) for t in ALL_MANIFEST_TYPES] + [("Connection", "close")]
    return httpx.get(f"{registry.url}{path}", headers=headers, timeout=30)


def served_digests(registry, path: str, n: int = 24) -> set[str]:
    return {
        f"{r.status_code} {r.headers.get('Docker-Content-Digest', '')}"
        for r in (fresh_get(registry, path) for _ in range(n))
    }


def test_concurrent_pushes_across_workers(registry, clients, puller, images):
    jobs = [(img, f"{registry.host}/workers/img{i}:v1") for i, img in enumerate(images)]
    jobs += [(images[0], f"{registry.host}/workers/shared:t{i}") for i in range(3)]
    with ThreadPoolExecutor(max_workers=len(jobs)) as pool:
        digests = list(pool.map(lambda job: clients.push("podman", job[0].name, job[1]), jobs))
    for (_image, ref), digest in zip(jobs, digests, strict=True):
        repo, tag = ref.split("/", 1)[1].rsplit(":", 1)
        assert served_digests(registry, f"/v2/{repo}/manifests/{tag}", 6) == {f"200 {digest}"}
    for image, ref in jobs[:3]:
        image_id = puller.pull(ref)
        assert puller.read_image_files(image_id, list(image.files)) == image.files
        puller.podman("rmi", "--force", image_id)


def test_moved_and_deleted_tags_are_seen_by_every_worker(registry, clients, puller, images):
    path = "/v2/workers/moving/manifests/latest"
    ref = f"{registry.host}/workers/moving:latest"
    previous = None
    for image in images[:2]:
        digest = clients.push("podman", image.name, ref)
        assert digest != previous
        # warm both workers' caches, then move the tag (next iteration) and look again
        assert served_digests(registry, path) == {f"200 {digest}"}, "a worker served a stale tag"
        assert served_digests(registry, f"/v2/workers/moving/manifests/{digest}") == {f"200 {digest}"}
        previous = digest

    clients.skopeo("delete", "--tls-verify=false", f"docker://{ref}")
    assert served_digests(registry, path) == {"404 "}, "a worker still serves a deleted tag"
    assert served_digests(registry, f"/v2/workers/moving/manifests/{previous}") == {"404 "}
    with pytest.raises(ClientError):
        puller.pull(ref)

    # and it can come back
    digest = clients.push("podman", images[2].name, ref)
    assert served_digests(registry, path) == {f"200 {digest}"}
    image_id = puller.pull(ref)
    assert puller.read_image_files(image_id, list(images[2].files)) == images[2].files
    puller.podman("rmi", "--force", image_id)
