"""Watches and the change log behind them: every write, whatever its source (a push through
/v2/, the API, `okura tag`, a delete), is one change with the next resourceVersion of one
sequence; `?watch=true` streams them as WatchEvents from a version (resuming where a client
left off), or from the current state (ADDED for what exists) without one; BOOKMARKs while quiet;
410 Expired once the log was trimmed past the version; 400 for a garbage version."""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta

import pytest

from registry.kube import meta
from registry.metadata.db import utcnow
from registry.model import changes
from registry.tasks import change_trim
from tests.support.backends import SQL_BACKENDS
from tests.support.http import assert_status, push_image

API = "/apis/image.openshift.io/v1"
STREAMS = f"{API}/namespaces/team/imagestreams"

# The change log is metadata: blob storage plays no part.
pytestmark = pytest.mark.parametrize("backend", SQL_BACKENDS, indirect=True)


def events(response) -> list[dict]:
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/json")
    return [json.loads(line) for line in response.text.splitlines() if line.strip()]


def summary(evts: list[dict]) -> list[tuple[str, str]]:
    return [(e["type"], e["object"]["metadata"].get("name", "")) for e in evts]


def versions(evts: list[dict]) -> list[int]:
    return [int(e["object"]["metadata"]["resourceVersion"]) for e in evts]


async def current_version(client, path: str = STREAMS) -> int:
    r = await client.get(path)
    assert r.status_code == 200, r.text
    return int(r.json()["metadata"]["resourceVersion"])


async def watch(client, path: str, seconds: int = 1, **params) -> list[dict]:
    query = {"watch": "true", "timeoutSeconds": str(seconds), **{k: str(v) for k, v in params.items()}}
    return events(await client.get(path, params=query))


async def test_every_write_is_the_next_version_and_one_event(client):
    start = await current_version(client)
    await push_image(client, "team/app", "v1")  # its first blob creates the stream, its manifest tags it
    r = await client.post(STREAMS, json={"metadata": {"name": "made", "labels": {"a": "b"}}})
    assert r.status_code == 201, r.text
    made_version = int(r.json()["metadata"]["resourceVersion"])
    r = await client.patch(
        f"{STREAMS}/made",
        json={"metadata": {"labels": {"a": "c"}}},
        headers={"Content-Type": "application/merge-patch+json"},
    )
    assert r.status_code == 200 and int(r.json()["metadata"]["resourceVersion"]) > made_version
    assert (await client.delete(f"{STREAMS}/made")).status_code == 200

    got = await watch(client, STREAMS, resourceVersion=start)
    assert summary(got) == [
        ("ADDED", "app"),
        ("MODIFIED", "app"),
        ("ADDED", "made"),
        ("MODIFIED", "made"),
        ("DELETED", "made"),
    ]
    seen = versions(got)
    assert seen == sorted(seen) and len(set(seen)) == len(seen)
    assert seen[2] == made_version
    # Changes of a stream deleted since show its last state.
    assert got[2]["object"]["metadata"]["labels"] == {"a": "c"}
    assert got[-1]["object"]["metadata"]["labels"] == {"a": "c"}  # the object as it was deleted
    assert seen[-1] == await current_version(client)

    # Resuming from the middle gives exactly what came after.
    assert summary(await watch(client, STREAMS, resourceVersion=seen[2])) == [("MODIFIED", "made"), ("DELETED", "made")]
    assert await watch(client, STREAMS, resourceVersion=seen[-1]) == []


async def test_a_watch_without_a_version_starts_from_what_exists(client):
    await push_image(client, "team/one", "v1")
    await push_image(client, "other/two", "v1")
    assert summary(await watch(client, STREAMS)) == [("ADDED", "one")]
    assert sorted(summary(await watch(client, f"{API}/imagestreams"))) == [("ADDED", "one"), ("ADDED", "two")]


async def test_a_watch_sees_a_push_made_while_it_runs(client):
    start = await current_version(client)

    async def push_later() -> str:
        await asyncio.sleep(0.3)
        digest, _ = await push_image(client, "team/live", "v1")
        return digest

    got, digest = await asyncio.gather(watch(client, STREAMS, seconds=2, resourceVersion=start), push_later())
    assert summary(got) == [("ADDED", "live"), ("MODIFIED", "live")]
    tags = got[-1]["object"]["status"]["tags"]
    assert tags[0]["tag"] == "v1" and tags[0]["items"][0]["image"] == digest


async def test_selectors_and_namespaces_narrow_a_watch(client):
    start = await current_version(client)
    for name, tier in (("web", "front"), ("db", "back")):
        r = await client.post(STREAMS, json={"metadata": {"name": name, "labels": {"tier": tier}}})
        assert r.status_code == 201
    await push_image(client, "elsewhere/x", "v1")
    assert summary(await watch(client, STREAMS, resourceVersion=start, labelSelector="tier=back")) == [("ADDED", "db")]
    picked = await watch(client, STREAMS, resourceVersion=start, fieldSelector="metadata.name=web")
    assert summary(picked) == [("ADDED", "web")]
    everywhere = await watch(client, f"{API}/imagestreams", resourceVersion=start)
    assert summary(everywhere) == [("ADDED", "web"), ("ADDED", "db"), ("ADDED", "x"), ("MODIFIED", "x")]


async def test_tags_images_and_the_pruner_are_watched_too(client):
    start = await current_version(client)
    digest, _ = await push_image(client, "team/app", "v1")
    tags = await watch(client, f"{API}/namespaces/team/imagestreamtags", resourceVersion=start)
    assert summary(tags) == [("ADDED", "app:v1")]
    assert tags[0]["object"]["image"]["metadata"]["name"] == digest
    images = await watch(client, f"{API}/images", resourceVersion=start)
    assert summary(images) == [("ADDED", digest)]
    r = await client.delete(f"{API}/namespaces/team/imagestreamtags/app:v1")
    assert r.status_code == 200, r.text
    assert summary(await watch(client, f"{API}/namespaces/team/imagestreamtags", resourceVersion=start))[-1] == (
        "DELETED",
        "app:v1",
    )
    pruner = "/apis/imageregistry.operator.openshift.io/v1/imagepruners"
    before = await current_version(client, pruner)
    r = await client.patch(
        f"{pruner}/cluster", json={"spec": {"suspend": True}}, headers={"Content-Type": "application/merge-patch+json"}
    )
    assert r.status_code == 200, r.text
    assert summary(await watch(client, pruner, resourceVersion=before)) == [("MODIFIED", "cluster")]


async def test_bookmarks_mark_progress_while_quiet(client, monkeypatch):
    from registry.api import kubeapi

    monkeypatch.setattr(kubeapi, "BOOKMARK_SECONDS", 0.2)
    version = await current_version(client)
    got = await watch(client, STREAMS, resourceVersion=version, allowWatchBookmarks="true")
    assert got and all(e["type"] == "BOOKMARK" for e in got)
    assert all(e["object"]["kind"] == "ImageStream" for e in got)
    assert versions(got)[-1] == version
    # Without allowWatchBookmarks: none.
    assert await watch(client, STREAMS, resourceVersion=version) == []


async def test_a_trimmed_log_answers_410_expired(client, registry_model):
    await push_image(client, "team/app", "v1")
    old = await current_version(client)
    await push_image(client, "team/app", "v2")
    latest = await current_version(client)
    assert await changes.trim(registry_model.db, utcnow() + timedelta(seconds=1)) > 0
    status = assert_status(
        await client.get(STREAMS, params={"watch": "true", "resourceVersion": str(old), "timeoutSeconds": "2"}),
        410,
        "Expired",
    )
    assert "too old resource version" in status["message"]
    # The latest version survives the trim, and versions go on from it.
    assert await current_version(client) == latest
    assert await watch(client, STREAMS, resourceVersion=latest) == []
    await push_image(client, "team/app", "v3")
    assert versions(await watch(client, STREAMS, resourceVersion=latest))[0] > latest


async def test_the_trim_job_keeps_the_retention(client, registry_model, monkeypatch):
    start = await current_version(client)
    await push_image(client, "team/app", "v1")
    retention = registry_model.config.changes.retention
    assert await change_trim.trim_once(registry_model) == 0  # nothing is that old yet
    assert await watch(client, STREAMS, resourceVersion=start)  # still there
    later = utcnow() + timedelta(seconds=retention + 1)
    monkeypatch.setattr(change_trim, "utcnow", lambda: later)
    assert await change_trim.trim_once(registry_model) > 0
    assert_status(
        await client.get(STREAMS, params={"watch": "1", "resourceVersion": str(start), "timeoutSeconds": "2"}),
        410,
        "Expired",
    )
    assert change_trim.interval(retention) == change_trim.MAX_INTERVAL
    assert change_trim.interval(60) == 6.0


@pytest.mark.parametrize("version", ["abc", "-1", "1.5", "99999999999999999999999", " 3", "0x10"])
async def test_a_garbage_version_is_a_400(client, version):
    for params in ({"watch": "true", "resourceVersion": version, "timeoutSeconds": "2"}, {"resourceVersion": version}):
        status = assert_status(await client.get(STREAMS, params=params), 400, "BadRequest")
        assert "resourceVersion" in status["message"]


async def test_a_version_from_the_future_is_not_waited_for_forever(client):
    ahead = await current_version(client) + 1000
    r = await client.get(STREAMS, params={"watch": "true", "resourceVersion": str(ahead), "timeoutSeconds": "1"})
    assert r.status_code in (200, 504), r.text  # an empty watch that ends, never a hang
    assert meta.parse_resource_version(str(ahead)) == ahead
