"""Imports across replicas on PostgreSQL + S3: an image imported through replica A is pulled
through replica B at once (B fetches the layers from the upstream and stores them), and both
replicas pulling the same new blob at the same time store it once, intact."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.digests import sha256
from tests.support.images import build_image, random_layers
from tests.support.servers import host
from tests.support.upstreams import Distribution, start_distribution

pytestmark = pytest.mark.e2e

API = "/apis/image.openshift.io/v1/namespaces/ext"


@pytest.fixture
def upstream(tmp_path: Path) -> Iterator[Distribution]:
    yield from start_distribution(tmp_path / "upstream")


def import_through(server, stream: str, source: str) -> str:
    body = {
        "kind": "ImageStreamImport",
        "apiVersion": "image.openshift.io/v1",
        "metadata": {"name": stream},
        "spec": {
            "import": True,
            "images": [
                {
                    "from": {"kind": "DockerImage", "name": source},
                    "to": {"name": "v1"},
                    "importPolicy": {"insecure": True},
                }
            ],
        },
    }
    r = httpx.post(f"{server.url}{API}/imagestreamimports", json=body, timeout=60)
    assert r.status_code == 201, r.text
    entry = r.json()["status"]["images"][0]
    assert entry["status"]["status"] == "Success", entry
    return entry["image"]["metadata"]["name"]


def test_import_on_a_pull_through_b(replicas, client_factory, upstream):
    a, b = replicas
    builder = client_factory("import-builder")
    image = build_image(builder, "localhost/replicas/imported:v1", random_layers([[400_000], [50_000]], "imp"))
    pushed = builder.push("podman", image.name, f"{upstream.host}/lib/imported:v1")
    assert import_through(a, "imported", f"{upstream.host}/lib/imported:v1") == pushed

    puller = client_factory("import-puller")
    ref = f"{host(b)}/ext/imported:v1"
    puller.pull(ref)
    got = puller.read_image_files(ref, list(image.files))
    assert got == image.files
    assert puller.skopeo_inspect(ref)["Digest"] == pushed


def test_both_replicas_pull_the_same_new_blob_at_once(replicas, client_factory, upstream):
    a, b = replicas
    builder = client_factory("race-builder")
    image = build_image(builder, "localhost/replicas/race:v1", random_layers([[3_000_000]], "race"))
    builder.push("podman", image.name, f"{upstream.host}/lib/race:v1")
    digest = import_through(a, "race", f"{upstream.host}/lib/race:v1")
    manifest = httpx.get(
        f"{a.url}/v2/ext/race/manifests/{digest}",
        headers={
            "Accept": "application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json"
        },
        timeout=10,
    ).json()
    layer = manifest["layers"][0]["digest"]
    results: dict[str, bytes] = {}

    def fetch(server, key: str) -> None:
        results[key] = httpx.get(f"{server.url}/v2/ext/race/blobs/{layer}", timeout=60, follow_redirects=True).content

    threads = [threading.Thread(target=fetch, args=(s, k)) for s, k in ((a, "a"), (b, "b"), (a, "a2"), (b, "b2"))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert {sha256(v) for v in results.values()} == {layer}
    # Afterwards both serve it from the bucket (a redirect to S3, no upstream needed).
    upstream.proc.kill()
    upstream.proc.wait()
    for server in (a, b):
        r = httpx.get(f"{server.url}/v2/ext/race/blobs/{layer}", timeout=60, follow_redirects=True)
        assert r.status_code == 200 and sha256(r.content) == layer
