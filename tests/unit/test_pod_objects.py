"""registry.api.pod_objects and registry.api.pod_logs, the pure parts: a server process as the Pod
`kubectl get pods` shows (ready, not ready with its reason, lost), the log request's options
(every bad value a 400, never a 500), the timestamps kubectl logs --timestamps prints, and the
stream of a ring's lines (tail, since, limitBytes, follow until told to stop)."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime, timedelta

import pytest

from registry.api.pod_logs import LogOptions, format_time_ns, log_options, parse_time_ns, render, stream_lines
from registry.api.pod_objects import pod_object, pod_row, ready_column
from registry.errors import RequestInvalid
from registry.logs import LogfmtFormatter, LogLine, LogRing
from registry.model.instances import Instance

NOW = datetime(2026, 12, 6, 14, 9, 36, tzinfo=UTC)
TIMEOUT = 30.0


def instance(**kw) -> Instance:
    base = {
        "name": "registry-a",
        "address": "10.0.0.7:5000",
        "host": "node-1",
        "version": "1.2.3",
        "started_at": NOW - timedelta(minutes=5),
        "heartbeat_at": NOW - timedelta(seconds=2),
        "restarts": 2,
        "ready": True,
        "uid": "0b5e3c9e-1111-4222-8333-444455556666",
    }
    return Instance(**{**base, **kw})


def test_a_ready_server_is_a_running_ready_pod():
    pod = pod_object(instance(), NOW, TIMEOUT)
    assert (pod["kind"], pod["apiVersion"]) == ("Pod", "v1")
    assert pod["metadata"] == {
        "name": "registry-a",
        "namespace": "openshift-image-registry",
        "uid": "0b5e3c9e-1111-4222-8333-444455556666",
        "creationTimestamp": "2026-12-06T14:04:36Z",
        "labels": {"docker-registry": "default"},
        "annotations": {
            "okura.io/address": "10.0.0.7:5000",
            "okura.io/version": "1.2.3",
            "kubectl.kubernetes.io/default-container": "registry",
        },
    }
    assert pod["spec"] == {"containers": [{"name": "registry", "image": "okura:1.2.3"}], "nodeName": "node-1"}
    status = pod["status"]
    assert (status["phase"], status["podIP"], status["startTime"]) == ("Running", "10.0.0.7", "2026-12-06T14:04:36Z")
    assert [(c["type"], c["status"]) for c in status["conditions"]] == [("Ready", "True")]
    assert status["containerStatuses"] == [
        {
            "name": "registry",
            "ready": True,
            "started": True,
            "restartCount": 2,
            "image": "okura:1.2.3",
            "imageID": "",
            "state": {"running": {"startedAt": "2026-12-06T14:04:36Z"}},
        }
    ]
    assert pod_row(instance(), NOW, TIMEOUT) == ["registry-a", "1/1", "Running", 2, "5m", "10.0.0.7", "node-1"]


def test_a_server_not_ready_says_why():
    storage = instance(ready=False, not_ready_reason="StorageUnavailable: the bucket does not answer")
    (condition,) = pod_object(storage, NOW, TIMEOUT)["status"]["conditions"]
    assert (condition["status"], condition["reason"]) == ("False", "StorageUnavailable")
    assert condition["message"] == "StorageUnavailable: the bucket does not answer"
    assert pod_row(storage, NOW, TIMEOUT)[1:3] == ["0/1", "NotReady"]

    draining = instance(ready=False, not_ready_reason="draining", phase="Terminating")
    (condition,) = pod_object(draining, NOW, TIMEOUT)["status"]["conditions"]
    assert (condition["reason"], condition["message"]) == ("ContainersNotReady", "draining")
    assert pod_row(draining, NOW, TIMEOUT)[1:3] == ["0/1", "Terminating"]


def test_a_server_silent_past_the_timeout_is_unknown():
    lost = instance(heartbeat_at=NOW - timedelta(seconds=31))
    pod = pod_object(lost, NOW, TIMEOUT)
    assert pod["status"]["phase"] == "Unknown"
    (condition,) = pod["status"]["conditions"]
    assert (condition["status"], condition["reason"]) == ("False", "NodeLost")
    assert condition["message"] == "no heartbeat since 2026-12-06T14:09:05Z"
    assert pod["status"]["containerStatuses"][0]["ready"] is False
    assert ready_column(lost, NOW, TIMEOUT) == "0/1"
    assert pod_row(lost, NOW, TIMEOUT)[2] == "Unknown"


def test_a_wildcard_address_shows_the_host():
    assert pod_object(instance(address="0.0.0.0:5000"), NOW, TIMEOUT)["status"]["podIP"] == "node-1"
    assert pod_object(instance(address="[::1]:5000"), NOW, TIMEOUT)["status"]["podIP"] == "::1"


# -- the log request ----------------------------------------------------------------------------

NOW_NS = 1_800_000_000 * 10**9


def test_log_options_as_kubectl_sends_them():
    assert log_options({}, "p", NOW_NS) == LogOptions()
    options = log_options(
        {"follow": "true", "tailLines": "10", "timestamps": "true", "container": "registry", "previous": "false"},
        "p",
        NOW_NS,
    )
    assert options == LogOptions(follow=True, tail=10, timestamps=True)
    assert log_options({"sinceSeconds": "60"}, "p", NOW_NS).since_ns == NOW_NS - 60 * 10**9
    assert log_options({"sinceTime": "2027-01-15T08:00:00Z"}, "p", NOW_NS).since_ns == NOW_NS
    assert log_options({"limitBytes": "100", "tailLines": "0"}, "p", NOW_NS) == LogOptions(tail=0, limit_bytes=100)


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ({"follow": "yes"}, "follow must be true or false"),
        ({"timestamps": "2"}, "timestamps must be true or false"),
        ({"tailLines": "-1"}, "tailLines must be an integer of at least 0"),
        ({"tailLines": "ten"}, "tailLines must be an integer"),
        ({"tailLines": "9" * 40}, "tailLines must be an integer"),
        ({"sinceSeconds": "0"}, "sinceSeconds must be an integer of at least 1"),
        ({"sinceSeconds": "1.5"}, "sinceSeconds must be an integer"),
        ({"sinceTime": "yesterday"}, "sinceTime must be an RFC 3339 time"),
        ({"sinceTime": "2027-13-45T99:00:00Z"}, "sinceTime must be an RFC 3339 time"),
        ({"sinceTime": "2027-01-15T08:00:00Z", "sinceSeconds": "5"}, "at most one of sinceTime or sinceSeconds"),
        ({"limitBytes": "0"}, "limitBytes must be an integer of at least 1"),
        ({"container": "sidecar"}, "container sidecar is not valid for pod p"),
        ({"previous": "true"}, 'previous terminated container "registry" in pod "p" not found'),
        ({"previous": "maybe"}, "previous must be true or false"),
    ],
)
def test_bad_log_options_are_refused_with_400(query, message):
    with pytest.raises(RequestInvalid) as caught:
        log_options(query, "p", NOW_NS)
    assert caught.value.status == 400
    assert message in caught.value.message


def test_times_with_nanoseconds_both_ways():
    ns = parse_time_ns("2026-12-06T14:09:36.123456789Z")
    assert ns % 10**9 == 123456789
    assert format_time_ns(ns) == "2026-12-06T14:09:36.123456789Z"
    assert parse_time_ns("2026-12-06T15:09:36.5+01:00") == parse_time_ns("2026-12-06T14:09:36.500Z")
    assert format_time_ns(parse_time_ns("2026-12-06T14:09:36Z")) == "2026-12-06T14:09:36.000000000Z"
    for bad in ("2026-12-06 14:09:36Z", "2026-12-06T14:09:36", "2026-12-06T14:09:36.1234567891Z"):
        with pytest.raises(ValueError):
            parse_time_ns(bad)


def test_render_prefixes_the_time_when_asked():
    lines = [LogLine(1, parse_time_ns("2026-12-06T14:09:36.123456Z"), 'time="2026-12-06T14:09:36.123Z" msg=a')]
    assert render(lines, False) == b'time="2026-12-06T14:09:36.123Z" msg=a\n'
    assert render(lines, True) == b'2026-12-06T14:09:36.123456000Z time="2026-12-06T14:09:36.123Z" msg=a\n'


def ring_with(*messages: str) -> LogRing:
    ring = LogRing(100)
    ring.setFormatter(LogfmtFormatter())
    for n, msg in enumerate(messages):
        r = logging.LogRecord("okura", logging.INFO, __file__, 1, msg, (), None)
        r.created = 1_800_000_000 + n
        ring.handle(r)
    return ring


async def collect(ring: LogRing | None, options: LogOptions, stop=lambda: False) -> bytes:
    return b"".join([chunk async for chunk in stream_lines(ring, options, stop)])


async def test_stream_tail_since_and_limit_bytes():
    ring = ring_with("one", "two", "three")
    assert (await collect(ring, LogOptions())).count(b"\n") == 3
    assert b"msg=three" in await collect(ring, LogOptions(tail=1))
    assert b"msg=one" not in await collect(ring, LogOptions(tail=1))
    since = await collect(ring, LogOptions(since_ns=1_800_000_001 * 10**9))
    assert (b"msg=one" not in since, b"msg=two" in since, b"msg=three" in since) == (True, True, True)
    assert len(await collect(ring, LogOptions(limit_bytes=10))) == 10
    assert await collect(None, LogOptions(follow=True)) == b""


async def test_follow_streams_new_lines_until_stopped():
    ring = ring_with("old")
    stopped = asyncio.Event()
    got: list[bytes] = []

    async def follow() -> None:
        async for chunk in stream_lines(ring, LogOptions(follow=True, tail=0), stopped.is_set):
            got.append(chunk)

    task = asyncio.create_task(follow())
    await asyncio.sleep(0.05)
    ring.handle(logging.LogRecord("okura", logging.INFO, __file__, 1, "new", (), None))
    for _ in range(100):
        if got:
            break
        await asyncio.sleep(0.01)
    assert len(got) == 1 and b"msg=new" in got[0] and b"msg=old" not in got[0]
    stopped.set()
    await asyncio.wait_for(task, 5)  # ends within the follow check interval


async def test_a_follower_that_leaves_is_cancelled_cleanly():
    ring = ring_with()
    stream = stream_lines(ring, LogOptions(follow=True), lambda: False)
    task = asyncio.create_task(stream.__anext__())
    await asyncio.sleep(0.02)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert not ring._waiters
