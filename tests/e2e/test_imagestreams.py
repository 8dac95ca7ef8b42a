"""Image streams through a real `okura serve`: podman pushes two different images to the same tag,
and the image stream shows both, newest first, while the Image of the current digest describes
what was built (layers, config digest, labels). `okura get` on the live data dir agrees."""

from __future__ import annotations

import json
import re
import subprocess

import pytest

from tests.support.images import build_image, random_layers
from tests.support.media_types import DOCKER_MANIFEST
from tests.support.processes import okura_command

pytestmark = pytest.mark.e2e

API = "/apis/image.openshift.io/v1"


def test_two_pushes_to_one_tag_make_a_history(registry, clients):
    first = build_image(clients, "localhost/e2e/streams-one", random_layers([[20_000], [3_000]], "s1"))
    second = build_image(clients, "localhost/e2e/streams-two", random_layers([[30_000], [4_000], [10]], "s2"))
    ref = f"{registry.host}/e2e/streams:latest"
    old = clients.push("podman", first.name, ref)
    new = clients.push("podman", second.name, ref)
    assert old != new

    with registry.http() as c:
        r = c.get(f"{API}/namespaces/e2e/imagestreams/streams")
        assert r.status_code == 200, r.text
        stream = r.json()
        r = c.get(f"{API}/images/{new}")
        assert r.status_code == 200, r.text
        image = r.json()
        manifest = c.get("/v2/e2e/streams/manifests/latest", headers={"Accept": DOCKER_MANIFEST}).json()
        listed = c.get(f"{API}/imagestreams").json()

    meta = stream["metadata"]
    # The generation counts spec changes; pushes change only status (as in OpenShift).
    assert (meta["name"], meta["namespace"], meta["generation"]) == ("streams", "e2e", 1)
    assert stream["status"]["dockerImageRepository"] == f"{registry.host}/e2e/streams"
    [tag] = stream["status"]["tags"]
    assert tag["tag"] == "latest"
    assert [i["image"] for i in tag["items"]] == [new, old]
    assert [i["generation"] for i in tag["items"]] == [1, 1]
    assert [i["dockerImageReference"] for i in tag["items"]] == [
        f"{registry.host}/e2e/streams@{new}",
        f"{registry.host}/e2e/streams@{old}",
    ]
    assert tag["items"][0]["created"] >= tag["items"][1]["created"]
    assert stream in listed["items"]

    assert image["metadata"]["name"] == new
    assert image["dockerImageReference"] == f"{registry.host}/e2e/streams@{new}"
    assert image["dockerImageManifestMediaType"] == DOCKER_MANIFEST
    meta = image["dockerImageMetadata"]
    assert meta["Id"] == "sha256:" + second.image_id.removeprefix("sha256:") == manifest["config"]["digest"]
    assert meta["Config"]["Labels"]["org.example.e2e"] == second.name
    assert meta["Architecture"] == "amd64" and meta["Os"] == "linux"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", meta["Created"])
    assert image["dockerImageLayers"] == [
        {"name": layer["digest"], "size": layer["size"], "mediaType": layer["mediaType"]}
        for layer in manifest["layers"]
    ]
    assert len(image["dockerImageLayers"]) == len(second.layers)
    assert meta["Size"] == sum(layer["size"] for layer in manifest["layers"]) + manifest["config"]["size"]

    # The CLI reads the running server's database directly and tells the same history.
    result = subprocess.run(
        [*okura_command(), "get", "is", "e2e/streams", "-o", "json", "--data-dir", str(registry.data_dir)],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin"},
    )
    assert result.returncode == 0, result.stderr
    assert [i["image"] for i in json.loads(result.stdout)["status"]["tags"][0]["items"]] == [new, old]
