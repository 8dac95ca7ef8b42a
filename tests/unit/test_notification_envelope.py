"""Pure parts of notifications: request bodies (stable ids, distribution's fields, CloudEvents),
batch sizing by bytes, signatures, ignore rules and the backoff schedule."""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime

from registry.config import EndpointConfig
from registry.model.events import DELETE, MOUNT, PULL, PUSH, Event, LoggedEvent
from registry.notifications import envelope
from registry.notifications.delivery import ignored, next_backoff

MANIFEST = "application/vnd.oci.image.manifest.v1+json"
AT = datetime(2026, 12, 6, 10, 0, 0, 123456, tzinfo=UTC)


def logged(i: int, event: Event) -> LoggedEvent:
    request = {"id": "r1", "addr": "10.0.0.1:5555", "host": "reg:5000", "method": "PUT", "useragent": "podman"}
    return LoggedEvent(i, AT, event, request, {"addr": "reg:5000", "instanceID": "abc"})


def test_event_ids_are_stable_uuids_per_log_id():
    assert envelope.event_id(7) == envelope.event_id(7) != envelope.event_id(8)
    assert len(envelope.event_id(7)) == 36


def test_distribution_event_fields():
    pushed = logged(
        1, Event(PUSH, "team/app", MANIFEST, "sha256:" + "a" * 64, 512, "v1", "alice", references=("sha256:b",))
    )
    doc = envelope.distribution_event(pushed, "https://reg.example.com")
    assert doc["timestamp"] == "2026-12-06T10:00:00.123456Z" and doc["action"] == "push"
    assert doc["target"] == {
        "repository": "team/app",
        "mediaType": MANIFEST,
        "digest": "sha256:" + "a" * 64,
        "size": 512,
        "length": 512,
        "url": "https://reg.example.com/v2/team/app/manifests/sha256:" + "a" * 64,
        "tag": "v1",
        "references": [{"digest": "sha256:b"}],
    }
    assert doc["actor"] == {"name": "alice"} and doc["source"] == {"addr": "reg:5000", "instanceID": "abc"}
    blob = envelope.distribution_event(
        logged(2, Event(MOUNT, "team/x", "application/octet-stream", "sha256:c", 3, from_repository="team/app")),
        "http://r",
    )
    assert (
        blob["target"]["url"] == "http://r/v2/team/x/blobs/sha256:c" and blob["target"]["fromRepository"] == "team/app"
    )
    assert envelope.distribution_event(logged(3, Event(DELETE, "team/app", tag="v1")), "")["target"] == {
        "repository": "team/app",
        "tag": "v1",
    }


def test_bodies_in_both_formats():
    events = [logged(i, Event(PUSH, "team/app", MANIFEST, f"sha256:{i}", 1, "v1")) for i in (1, 2)]
    body, kind = envelope.body(events, envelope.DISTRIBUTION, "")
    assert kind == envelope.ENVELOPE_TYPE and len(json.loads(body)["events"]) == 2
    one, kind = envelope.body(events[:1], envelope.CLOUDEVENTS, "")
    assert kind == envelope.CLOUDEVENTS_TYPE
    cloud = json.loads(one)
    assert (cloud["specversion"], cloud["type"], cloud["subject"]) == ("1.0", "io.okura.registry.push", "team/app:v1")
    assert cloud["id"] == envelope.event_id(1) and cloud["data"]["target"]["digest"] == "sha256:1"
    many, kind = envelope.body(events, envelope.CLOUDEVENTS, "")
    assert kind == envelope.CLOUDEVENTS_BATCH_TYPE and len(json.loads(many)) == 2


def test_batches_fit_the_byte_limit_but_carry_at_least_one_event():
    events = [logged(i, Event(PUSH, "team/app", MANIFEST, "sha256:" + "f" * 64, 1, "t" * 100)) for i in range(50)]
    assert envelope.first_batch(events, 100, 1 << 20, envelope.DISTRIBUTION, "") == 50
    assert envelope.first_batch(events, 10, 1 << 20, envelope.DISTRIBUTION, "") == 10
    fitted = envelope.first_batch(events, 100, 4096, envelope.DISTRIBUTION, "")
    assert 1 <= fitted < 50 and len(envelope.body(events[:fitted], envelope.DISTRIBUTION, "")[0]) <= 4096
    assert envelope.first_batch(events, 100, 10, envelope.DISTRIBUTION, "") == 1


def test_signature_is_hmac_sha256_of_the_body():
    assert envelope.signature(b"k", b"body") == "sha256=" + __import__("hmac").new(b"k", b"body", "sha256").hexdigest()


def test_ignore_rules():
    ep = EndpointConfig("a", "http://x", ignore_media_types=("application/octet-stream",), ignore_actions=("delete",))
    assert ignored(ep, Event(PUSH, "r", "application/octet-stream"))
    assert ignored(ep, Event(DELETE, "r", tag="v1"))
    assert ignored(ep, Event(PULL, "r", MANIFEST))  # pulls only for endpoints that ask
    assert not ignored(EndpointConfig("b", "http://x", pulls=True), Event(PULL, "r", MANIFEST))
    assert not ignored(ep, Event(PUSH, "r", MANIFEST))


def test_backoff_doubles_with_jitter_up_to_the_cap():
    ep = EndpointConfig("a", "http://x", backoff=1.0, max_backoff=10.0)
    rand = random.Random(1)
    waits = [next_backoff(ep, n, rand) for n in range(1, 8)]
    for n, wait in enumerate(waits, start=1):
        base = min(10.0, 2 ** (n - 1))
        assert base / 2 <= wait <= base
