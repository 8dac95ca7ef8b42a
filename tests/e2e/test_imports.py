"""Imports end to end: a real `okura serve` importing from CNCF distribution (docker-registry) on
loopback, podman pulling the imported tag through Okura before any blob is local and again with the
upstream gone, the import controller importing DockerImage spec tags of a new stream, and a
scheduled tag picking up a new upstream push within the (short) interval with one history item."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.clients import Clients, make_clients
from tests.support.images import build_image, random_layers
from tests.support.registries import Registry, start_registry
from tests.support.upstreams import Distribution, start_distribution

pytestmark = [pytest.mark.e2e, pytest.mark.storages("filesystem", "s3-redirect")]

API = "/apis/image.openshift.io/v1/namespaces/ext"
INTERVAL = 2.0  # imports.scheduled_interval of this module's registry


@pytest.fixture(scope="module")
def registry(tmp_path_factory, blob_store) -> Iterator[Registry]:
    env = {"OKURA_IMPORTS_SCHEDULED_INTERVAL": f"{INTERVAL}s"}
    yield from start_registry(tmp_path_factory.mktemp("okura-imports"), env=env, store=blob_store)


@pytest.fixture
def upstream(tmp_path: Path) -> Iterator[Distribution]:
    yield from start_distribution(tmp_path / "upstream")


def push_upstream(clients: Clients, upstream: Distribution, name: str, tag: str) -> tuple[str, Any]:
    image = build_image(clients, f"localhost/e2e/{name}-{tag}", random_layers([[300_000], [20_000]], f"{name}{tag}"))
    digest = clients.push("podman", image.name, f"{upstream.host}/lib/{name}:{tag}")
    return digest, image


def import_tag(registry: Registry, stream: str, source: str, tag: str) -> dict[str, Any]:
    body = {
        "kind": "ImageStreamImport",
        "apiVersion": "image.openshift.io/v1",
        "metadata": {"name": stream},
        "spec": {
            "import": True,
            "images": [
                {
                    "from": {"kind": "DockerImage", "name": source},
                    "to": {"name": tag},
                    "importPolicy": {"insecure": True},
                }
            ],
        },
    }
    with registry.http() as c:
        r = c.post(f"{API}/imagestreamimports", json=body)
    assert r.status_code == 201, r.text
    entry = r.json()["status"]["images"][0]
    assert entry["status"]["status"] == "Success", entry
    return r.json()


def tag_items(registry: Registry, stream: str, tag: str) -> list[dict[str, Any]]:
    with registry.http() as c:
        r = c.get(f"{API}/imagestreams/{stream}")
    if r.status_code == 404:
        return []
    assert r.status_code == 200, r.text
    found = [t for t in r.json()["status"].get("tags", []) if t["tag"] == tag]
    return found[0]["items"] if found else []


def wait_for_items(registry: Registry, stream: str, tag: str, count: int, timeout: float) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while True:
        items = tag_items(registry, stream, tag)
        if len(items) >= count or time.monotonic() > deadline:
            return items
        time.sleep(0.2)


def test_podman_pulls_an_imported_tag_through_then_from_local_storage(
    registry, clients, puller, tmp_path_factory, upstream
):
    digest, image = push_upstream(clients, upstream, "app", "v1")
    answer = import_tag(registry, "app", f"{upstream.host}/lib/app:v1", "v1")
    assert answer["status"]["images"][0]["image"]["metadata"]["name"] == digest
    before = registry.stored_blobs()
    mark = registry.mark()

    pulled = puller.pull(f"{registry.host}/ext/app:v1")
    assert pulled == image.image_id
    files = puller.read_image_files(pulled, list(image.layers[0]))
    assert files == image.layers[0]
    registry.sync_log()
    fetched = [e for e in registry.access(mark) if "/blobs/" in e["path"] and e["method"] == "GET"]
    assert fetched and all(e["status"] in ("200", "307") for e in fetched)
    stored = registry.stored_blobs() - before
    assert len(stored) >= 2, "the layers were not stored on the way"

    # The upstream goes away: a fresh client still pulls, from what was stored.
    upstream.proc.kill()
    upstream.proc.wait()
    again = make_clients(tmp_path_factory, registry, "puller-after")
    assert again.pull(f"{registry.host}/ext/app:v1") == image.image_id


def test_controller_imports_dockerimage_tags_of_a_new_stream(registry, clients, upstream):
    digest, _ = push_upstream(clients, upstream, "ctl", "v1")
    stream = {
        "kind": "ImageStream",
        "apiVersion": "image.openshift.io/v1",
        "metadata": {"name": "ctl"},
        "spec": {
            "tags": [
                {
                    "name": "v1",
                    "from": {"kind": "DockerImage", "name": f"{upstream.host}/lib/ctl:v1"},
                    "importPolicy": {"insecure": True},
                }
            ]
        },
    }
    with registry.http() as c:
        r = c.post(f"{API}/imagestreams", json=stream)
    assert r.status_code == 201, r.text
    items = wait_for_items(registry, "ctl", "v1", 1, timeout=15)
    assert [i["image"] for i in items] == [digest]
    assert items[0]["dockerImageReference"] == f"{upstream.host}/lib/ctl@{digest}"


def test_a_failing_spec_tag_gets_a_condition_not_a_retry_loop(registry):
    stream = {
        "kind": "ImageStream",
        "apiVersion": "image.openshift.io/v1",
        "metadata": {"name": "broken"},
        "spec": {"tags": [{"name": "v1", "from": {"kind": "DockerImage", "name": "127.0.0.1:9/lib/none:v1"}}]},
    }
    with registry.http() as c:
        assert c.post(f"{API}/imagestreams", json=stream).status_code == 201
        deadline = time.monotonic() + 15
        conditions: list[dict[str, Any]] = []
        while time.monotonic() < deadline and not conditions:
            tags = c.get(f"{API}/imagestreams/broken").json()["status"].get("tags", [])
            conditions = [cond for t in tags for cond in t.get("conditions", [])]
            time.sleep(0.2)
        assert conditions and conditions[0]["reason"] == "ServiceUnavailable", conditions
        version = c.get(f"{API}/imagestreams/broken").json()["metadata"]["resourceVersion"]
        time.sleep(2)
        assert c.get(f"{API}/imagestreams/broken").json()["metadata"]["resourceVersion"] == version


def test_scheduled_tag_picks_up_a_new_upstream_push_once(registry, clients, upstream):
    first, _ = push_upstream(clients, upstream, "sched", "latest")
    stream = {
        "kind": "ImageStream",
        "apiVersion": "image.openshift.io/v1",
        "metadata": {"name": "sched"},
        "spec": {
            "tags": [
                {
                    "name": "latest",
                    "from": {"kind": "DockerImage", "name": f"{upstream.host}/lib/sched:latest"},
                    "importPolicy": {"insecure": True, "scheduled": True},
                }
            ]
        },
    }
    with registry.http() as c:
        assert c.post(f"{API}/imagestreams", json=stream).status_code == 201
    assert [i["image"] for i in wait_for_items(registry, "sched", "latest", 1, timeout=15)] == [first]
    # Rounds with nothing new upstream write nothing.
    with registry.http() as c:
        version = c.get(f"{API}/imagestreams/sched").json()["metadata"]["resourceVersion"]
        time.sleep(INTERVAL * 2.5)
        assert c.get(f"{API}/imagestreams/sched").json()["metadata"]["resourceVersion"] == version
    second, _ = push_upstream(clients, upstream, "sched", "latest")
    items = wait_for_items(registry, "sched", "latest", 2, timeout=INTERVAL * 4 + 5)
    assert [i["image"] for i in items] == [second, first]
    time.sleep(INTERVAL * 2)
    assert [i["image"] for i in tag_items(registry, "sched", "latest")] == [second, first]
