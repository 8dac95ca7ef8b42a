"""Webhook delivery end to end: real `okura serve` processes posting to real receiver processes.

The envelope and every field per action (distribution's documented format), a receiver down then
up getting every event in order, `kill -9` of the server mid-delivery losing nothing, two
replicas on PostgreSQL delivering each event once, a slow endpoint not delaying a fast one,
filters, signatures, CloudEvents, and the watch API seeing the same pushes as the webhook."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.http import push_image
from tests.support.postgres import create_database, drop_database
from tests.support.receiver import Receiver, body_bytes, receivers, verify_signature
from tests.support.registries import Registry, start_registry
from tests.support.servers import OkuraServer

ENVELOPE = "application/vnd.docker.distribution.events.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
FAST = {"backoff": "200ms", "max_backoff": "1s", "timeout": "2s"}
SUPERVISOR_SETTLE = 1.0  # the delivery supervisor reads endpoints at start, then every 5 s


@pytest.fixture
def factory(tmp_path: Path) -> Iterator[Any]:
    with receivers(tmp_path) as start:
        yield start


def endpoints_env(*endpoints: dict[str, Any]) -> dict[str, str]:
    return {"OKURA_NOTIFICATIONS_ENDPOINTS": json.dumps(list(endpoints))}


def serve(
    tmp_path: Path, name: str, *endpoints: dict[str, Any], env: dict[str, str] | None = None
) -> Iterator[Registry]:
    return start_registry(tmp_path / name, env={**endpoints_env(*endpoints), **(env or {})})


def push(registry: Registry | OkuraServer, repo: str, tag: str | None, layers: int = 1) -> str:
    async def run() -> str:
        async with httpx.AsyncClient(base_url=registry.url, timeout=30) as client:
            digest, _ = await push_image(client, repo, tag, layers=layers)
            return digest

    return asyncio.run(run())


def manifest_events(found: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [e for e in found if e["target"].get("mediaType") == OCI_MANIFEST]


def test_envelope_and_fields_for_each_action(tmp_path, factory):
    receiver: Receiver = factory()
    for registry in serve(tmp_path, "okura", {"name": "hook", "url": receiver.url, **FAST}):
        digest = push(registry, "team/app", "v1")
        with registry.http() as c:
            manifest = c.get(f"/v2/team/app/manifests/{digest}", headers={"Accept": OCI_MANIFEST}).json()
            layer = manifest["layers"][0]["digest"]
            assert c.post(f"/v2/team/copy/blobs/uploads/?mount={layer}&from=team/app").status_code == 201
            assert c.delete("/v2/team/app/manifests/v1").status_code == 202
            assert c.delete(f"/v2/team/app/manifests/{digest}").status_code == 202
        found = receiver.wait_for(lambda e: len(e) >= 6, of="events")
        request = receiver.requests()[0]
        assert request["headers"]["content-type"] == ENVELOPE and request["method"] == "POST"
        actions = [(e["action"], e["target"]["repository"]) for e in found]
        assert actions == [
            ("push", "team/app"),  # config
            ("push", "team/app"),  # layer
            ("push", "team/app"),  # manifest
            ("mount", "team/copy"),
            ("delete", "team/app"),
            ("delete", "team/app"),
        ]
        pushed = manifest_events(found)[0]
        assert set(pushed) == {"id", "timestamp", "action", "target", "request", "actor", "source"}
        target = pushed["target"]
        assert (target["digest"], target["tag"], target["mediaType"]) == (digest, "v1", OCI_MANIFEST)
        assert target["size"] == target["length"] > 0
        assert target["url"].endswith(f"/v2/team/app/manifests/{digest}")
        assert {r["digest"] for r in target["references"]} == {manifest["config"]["digest"], layer}
        assert set(pushed["request"]) == {"id", "addr", "host", "method", "useragent"}
        assert pushed["request"]["method"] == "PUT" and pushed["request"]["useragent"].startswith("python-httpx")
        assert pushed["request"]["host"] == registry.host
        assert set(pushed["source"]) == {"addr", "instanceID"} and pushed["source"]["instanceID"]
        assert pushed["timestamp"].endswith("Z")
        blob = found[1]["target"]
        assert blob["mediaType"] == "application/octet-stream" and blob["digest"] == layer and "tag" not in blob
        mount = found[3]["target"]
        assert (mount["digest"], mount["fromRepository"]) == (layer, "team/app")
        assert found[4]["target"] == {"repository": "team/app", "tag": "v1"}
        assert found[5]["target"]["digest"] == digest
        assert len({e["id"] for e in found}) == len(found)


def test_receiver_down_then_up_gets_every_event_in_order(tmp_path, factory):
    receiver: Receiver = factory()
    # The default backoff (1 s doubling to 10 s): down for 30 s, it is back in business within ~10 s.
    for registry in serve(tmp_path, "okura", {"name": "hook", "url": receiver.url}):
        receiver.kill()
        digests = [push(registry, "team/down", f"t{i}") for i in range(5)]
        time.sleep(30)
        receiver.start()
        found = receiver.wait_for(lambda e: len(manifest_events(e)) >= 5, of="events", timeout=20)
        assert [e["target"]["digest"] for e in manifest_events(found)] == digests
        ids = [e["id"] for e in found]
        assert len(ids) == len(set(ids))
        with registry.http() as c:
            metrics = c.get("/metrics").text
        assert 'imageregistry_notifications_failed_total{endpoint="hook"}' in metrics


def test_kill_9_mid_delivery_loses_nothing(tmp_path, factory):
    receiver: Receiver = factory()
    receiver.set_mode("hang", delay=60)
    hook = {"name": "hook", "url": receiver.url, "timeout": "30s", "backoff": "200ms", "max_backoff": "1s"}
    server = OkuraServer(tmp_path / "data", env=endpoints_env(hook)).start()
    try:
        digests = [push(server, "team/crash", f"t{i}") for i in range(3)]
        receiver.wait_for(lambda r: len(r) >= 1, of="in_flight")  # a delivery is mid-request
        server.kill()
        receiver.set_mode("ok")
        server.restart()
        found = receiver.wait_for(lambda e: len(manifest_events(e)) >= 3, of="events", timeout=30)
        # At least once: the batch in flight at the kill may come twice, nothing is missing.
        firsts = list(dict.fromkeys(e["target"]["digest"] for e in manifest_events(found)))
        assert firsts == digests
    finally:
        server.stop()


def test_a_slow_endpoint_does_not_delay_a_fast_one(tmp_path, factory):
    slow, fast = factory("slow"), factory("fast")
    slow.set_mode("slow", delay=5)
    hooks = [{"name": "slow", "url": slow.url, "timeout": "20s"}, {"name": "fast", "url": fast.url, **FAST}]
    for registry in serve(tmp_path, "okura", *hooks):
        started = time.monotonic()
        digest = push(registry, "team/speed", "v1")
        found = fast.wait_for(lambda e: manifest_events(e), of="events", timeout=10)
        assert manifest_events(found)[0]["target"]["digest"] == digest
        assert time.monotonic() - started < 4  # not behind the slow one's 5 s answers


def test_filters_signatures_and_cloudevents(tmp_path, factory):
    plain, signed, cloud = factory("plain"), factory("signed"), factory("cloud")
    hooks = [
        {"name": "plain", "url": plain.url, "ignore": {"mediatypes": ["application/octet-stream"]}, **FAST},
        {"name": "signed", "url": signed.url, "secret": "s3cret", "ignore": {"actions": ["push"]}, **FAST},
        {"name": "cloud", "url": cloud.url, "format": "cloudevents", "headers": {"X-Team": ["a"]}, **FAST},
    ]
    for registry in serve(tmp_path, "okura", *hooks):
        digest = push(registry, "team/filter", "v1")
        with registry.http() as c:
            assert c.delete("/v2/team/filter/manifests/v1").status_code == 202
        found = plain.wait_for(lambda e: len(e) >= 2, of="events")
        assert [(e["action"], e["target"].get("mediaType")) for e in found] == [
            ("push", OCI_MANIFEST),
            ("delete", None),
        ]
        [request] = signed.wait_for(lambda r: r, of="requests")
        assert [e["action"] for e in request["json"]["events"]] == ["delete"]
        assert verify_signature(b"s3cret", body_bytes(request), request["headers"]["x-okura-signature"])
        assert not verify_signature(b"wrong", body_bytes(request), request["headers"]["x-okura-signature"])
        events = cloud.wait_for(lambda e: len(e) >= 4, of="events")  # config, layer, manifest, delete
        first = cloud.requests()[0]
        assert first["headers"]["content-type"].startswith("application/cloudevents")
        assert first["headers"]["x-team"] == "a"
        assert {e["specversion"] for e in events} == {"1.0"}
        pushed = [e for e in events if e["type"] == "io.okura.registry.push" and e["subject"] == "team/filter:v1"]
        assert pushed and pushed[0]["data"]["target"]["digest"] == digest


def test_watch_and_webhook_see_the_same_pushes(tmp_path, factory):
    receiver: Receiver = factory()
    for registry in serve(tmp_path, "okura", {"name": "hook", "url": receiver.url, **FAST}):
        api = f"{registry.url}/apis/image.openshift.io/v1/namespaces/team/imagestreams"
        watched: list[tuple[str, str]] = []
        with httpx.Client(timeout=30) as c:
            version = c.get(api).json()["metadata"]["resourceVersion"]
            digests = [push(registry, "team/both", f"t{i}") for i in range(3)]
            with c.stream("GET", api, params={"watch": "true", "resourceVersion": version, "timeoutSeconds": "3"}) as r:
                for line in r.iter_lines():
                    obj = json.loads(line)["object"]
                    for tag in obj.get("status", {}).get("tags", []):
                        pair = (tag["tag"], tag["items"][0]["image"])
                        if pair not in watched:
                            watched.append(pair)
        found = receiver.wait_for(lambda e: len(manifest_events(e)) >= 3, of="events")
        hooked = [(e["target"]["tag"], e["target"]["digest"]) for e in manifest_events(found)]
        assert hooked == [(f"t{i}", d) for i, d in enumerate(digests)]
        assert sorted(watched) == sorted(hooked)


def test_two_replicas_on_postgresql_deliver_each_event_once(tmp_path, factory):
    receiver: Receiver = factory()
    url = asyncio.run(create_database("okura_notify"))
    try:
        hook = {"name": "hook", "url": receiver.url, **FAST}
        env = {"OKURA_DATABASE_URL": url}
        for a in serve(tmp_path, "a", hook, env=env):
            for b in serve(tmp_path, "b", hook, env=env):
                digests = [push(server, "team/ha", f"t{i}") for i, server in enumerate([a, b] * 4)]
                found = receiver.wait_for(lambda e: len(manifest_events(e)) >= 8, of="events", timeout=20)
                time.sleep(1)  # anything duplicated would have arrived by now
                found = receiver.events()
                ids = [e["id"] for e in found]
                assert len(ids) == len(set(ids)), "an event was delivered twice"
                assert [e["target"]["digest"] for e in manifest_events(found)] == digests
    finally:
        asyncio.run(drop_database(url))


@pytest.mark.parametrize("mode", [{"mode": "status", "status": 500}, {"mode": "redirect"}, {"mode": "close"}])
def test_a_failing_receiver_gets_the_events_once_it_answers(tmp_path, factory, mode):
    receiver: Receiver = factory()
    receiver.set_mode(**mode)
    for registry in serve(tmp_path, "okura", {"name": "hook", "url": receiver.url, **FAST}):
        digest = push(registry, "team/faulty", "v1")
        receiver.wait_for(lambda r: len(r) >= 3, of="requests")  # tried, failed, tried again
        assert receiver.events() == []  # nothing counts as delivered: no 2xx
        with registry.http() as c:
            state = c.get("/metrics").text
        assert 'imageregistry_notifications_failed_total{endpoint="hook"}' in state
        receiver.set_mode("ok")
        found = receiver.wait_for(lambda e: manifest_events(e), of="events", timeout=10)
        assert manifest_events(found)[0]["target"]["digest"] == digest
        assert [e["target"]["mediaType"] for e in found][-1] == OCI_MANIFEST  # in order, the manifest last


def test_an_endpoint_that_does_not_resolve_does_not_stop_the_others(tmp_path, factory):
    receiver: Receiver = factory()
    hooks = [
        {"name": "nowhere", "url": "http://no-such-host.invalid/hook", **FAST},
        {"name": "ok", "url": receiver.url, **FAST},
    ]
    for registry in serve(tmp_path, "okura", *hooks):
        digest = push(registry, "team/dns", "v1")
        found = receiver.wait_for(lambda e: manifest_events(e), of="events", timeout=10)
        assert manifest_events(found)[0]["target"]["digest"] == digest


def lease_holder_pid(url: str) -> int | None:
    """The pid of the process holding the endpoint's delivery lease (holders are host:pid:nonce)."""
    import asyncpg

    async def query() -> str | None:
        conn = await asyncpg.connect(url, timeout=5)
        try:
            return await conn.fetchval("SELECT holder FROM leases WHERE name = 'notify:hook'")
        finally:
            await conn.close()

    holder = asyncio.run(query())
    return int(holder.split(":")[1]) if holder else None


def test_the_delivering_replica_dies_and_the_other_takes_over(tmp_path, factory):
    receiver: Receiver = factory()
    receiver.set_mode("hang", delay=60)
    url = asyncio.run(create_database("okura_notify_death"))
    hook = {"name": "hook", "url": receiver.url, "timeout": "30s", "backoff": "200ms", "max_backoff": "1s"}
    env = {**endpoints_env(hook), "OKURA_DATABASE_URL": url}
    a = OkuraServer(tmp_path / "a", env=env)
    b = OkuraServer(tmp_path / "b", env=env)
    try:
        a.start()
        b.start()
        digests = [push(server, "team/death", f"t{i}") for i, server in enumerate([a, b, a])]
        receiver.wait_for(lambda r: len(r) >= 1, of="in_flight")
        holder = lease_holder_pid(url)
        dying, surviving = (a, b) if holder == a.pid else (b, a)
        assert holder == dying.pid
        dying.kill()
        receiver.set_mode("ok")
        found = receiver.wait_for(lambda e: len(manifest_events(e)) >= 3, of="events", timeout=30)
        assert list(dict.fromkeys(e["target"]["digest"] for e in manifest_events(found))) == digests
        assert surviving.alive()
    finally:
        a.stop()
        b.stop()
        asyncio.run(drop_database(url))


def test_an_endpoint_asking_for_pulls_gets_sampled_pull_events(tmp_path, factory):
    receiver: Receiver = factory()
    hook = {"name": "hook", "url": receiver.url, "pulls": True, "ignore": {"actions": ["push"]}, **FAST}
    for registry in serve(tmp_path, "okura", hook):
        digest = push(registry, "team/pulled", "v1")
        time.sleep(SUPERVISOR_SETTLE)  # the supervisor sees the endpoint's `pulls` within its period
        with registry.http() as c:
            for _ in range(20):
                assert c.get("/v2/team/pulled/manifests/v1", headers={"Accept": OCI_MANIFEST}).status_code == 200
        [pulled] = receiver.wait_for(lambda e: e, of="events")
        assert (pulled["action"], pulled["target"]["digest"], pulled["target"]["tag"]) == ("pull", digest, "v1")
        assert pulled["okura"]["pulls"] == 1
        time.sleep(1)
        assert len(receiver.events()) == 1  # the other 19 wait for the next interval (1 min)
