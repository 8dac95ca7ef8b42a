"""The event log: every change appends its event in its own transaction (an event exists if and
only if its change committed), with what distribution's envelope needs: action, target, request,
actor and source. Through the app, on SQLite and PostgreSQL."""

from __future__ import annotations

import json

import pytest

from registry.model import events
from tests.support.backends import SQL_BACKENDS
from tests.support.digests import sha256
from tests.support.http import push_blob, push_image, put_manifest
from tests.support.media_types import OCI_MANIFEST

pytestmark = pytest.mark.parametrize("backend", SQL_BACKENDS, indirect=True)

BLOB = "application/octet-stream"


async def logged(registry_model, after: int = 0) -> list[events.LoggedEvent]:
    return await registry_model.db.read(events.after, after, 10_000)


async def newest(registry_model) -> int:
    return await registry_model.db.read(events.newest)


def summary(found: list[events.LoggedEvent]) -> list[tuple]:
    return [(e.event.action, e.event.repository, e.event.media_type, e.event.tag) for e in found]


async def test_a_push_logs_its_blobs_then_its_manifest(client, registry_model):
    start = await newest(registry_model)
    digest, manifest = await push_image(client, "team/app", "v1", layers=2)
    found = await logged(registry_model, start)
    assert summary(found) == [
        ("push", "team/app", BLOB, None),
        ("push", "team/app", BLOB, None),
        ("push", "team/app", BLOB, None),
        ("push", "team/app", OCI_MANIFEST, "v1"),
    ]
    pushed = found[-1]
    document = json.loads(manifest)
    blobs = [document["config"]["digest"], *(layer["digest"] for layer in document["layers"])]
    assert (pushed.event.digest, pushed.event.size) == (digest, len(manifest))
    assert sorted(pushed.event.references) == sorted(blobs)
    assert pushed.request["method"] == "PUT" and pushed.request["id"] and pushed.request["addr"]
    assert pushed.request["host"] == "registry" and pushed.request["useragent"].startswith("python-httpx")
    assert pushed.source["addr"] and pushed.source["instanceID"] == events.INSTANCE_ID
    assert [e.id for e in found] == sorted(e.id for e in found)


async def test_push_by_digest_mount_and_deletes(client, registry_model):
    digest, manifest = await push_image(client, "team/src", "v1")
    layer = json.loads(manifest)["layers"][0]["digest"]
    start = await newest(registry_model)
    r = await put_manifest(client, "team/src", digest, manifest, OCI_MANIFEST)
    assert r.status_code == 201
    r = await client.post(f"/v2/team/dst/blobs/uploads/?mount={layer}&from=team/src")
    assert r.status_code == 201
    assert (await client.delete("/v2/team/src/manifests/v1")).status_code == 202
    assert (await client.delete(f"/v2/team/src/manifests/{digest}")).status_code == 202
    found = await logged(registry_model, start)
    assert summary(found) == [
        ("push", "team/src", OCI_MANIFEST, None),
        ("mount", "team/dst", BLOB, None),
        ("delete", "team/src", None, "v1"),
        ("delete", "team/src", OCI_MANIFEST, None),
    ]
    assert found[1].event.from_repository == "team/src" and found[1].event.digest == layer
    assert found[3].event.digest == digest


async def test_a_refused_write_logs_nothing(client, registry_model):
    start = await newest(registry_model)
    missing = {"schemaVersion": 2, "mediaType": OCI_MANIFEST,
               "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": sha256(b"x"), "size": 1},
               "layers": []}  # fmt: skip
    r = await put_manifest(client, "team/bad", "v1", json.dumps(missing).encode(), OCI_MANIFEST)
    assert r.status_code == 400
    assert await logged(registry_model, start) == []


async def test_api_writes_are_events_too(client, registry_model):
    digest, _ = await push_image(client, "team/base", "v1")
    start = await newest(registry_model)
    tag = {
        "kind": "ImageStreamTag",
        "apiVersion": "image.openshift.io/v1",
        "metadata": {"name": "app:stable"},
        "tag": {"name": "stable", "from": {"kind": "ImageStreamImage", "name": f"base@{digest}"}},
    }
    api = "/apis/image.openshift.io/v1/namespaces/team"
    assert (await client.post(f"{api}/imagestreamtags", json=tag)).status_code == 201
    assert (await client.delete(f"{api}/imagestreamtags/app:stable")).status_code == 200
    assert (await client.delete(f"{api}/imagestreams/base")).status_code == 200
    found = await logged(registry_model, start)
    assert summary(found) == [
        ("push", "team/app", OCI_MANIFEST, "stable"),
        ("delete", "team/app", None, "stable"),
        ("delete", "team/base", None, "v1"),
        ("delete", "team/base", None, None),
    ]
    assert found[0].event.digest == digest and found[0].request["method"] == "POST"


async def test_blob_pushes_without_a_manifest_are_logged(client, registry_model):
    start = await newest(registry_model)
    digest = await push_blob(client, "team/blobs", b"just bytes")
    [event] = await logged(registry_model, start)
    assert (event.event.action, event.event.digest, event.event.size) == ("push", digest, 10)
