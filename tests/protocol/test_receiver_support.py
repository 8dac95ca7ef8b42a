"""The webhook receiver of the notification tests (tests/support/receiver.py) against its real
process: every mode, restarts on the same port, the events it extracts, signatures."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

import tests.support.receiver as receiver_module
from tests.support.ports import allocate_port
from tests.support.receiver import (
    CLOUDEVENT,
    CLOUDEVENTS_BATCH,
    DISTRIBUTION_EVENTS,
    Receiver,
    body_bytes,
    receivers,
    sign,
    verify_signature,
)


@pytest.fixture
def hook(tmp_path: Path) -> Iterator[Receiver]:
    with receivers(tmp_path) as start:
        yield start()


def post(
    hook: Receiver, body: object, content_type: str = DISTRIBUTION_EVENTS, timeout: float = 5, **kw: Any
) -> httpx.Response:
    data = json.dumps(body).encode()
    headers = {"Content-Type": content_type, **kw.pop("headers", {})}
    return httpx.post(hook.url, content=data, headers=headers, timeout=timeout, **kw)


def test_ok_logs_the_request(hook: Receiver) -> None:
    body = {"events": [{"id": "1", "action": "push"}]}
    r = post(hook, body, headers={"X-Okura-Signature": "sha256=00"})
    assert (r.status_code, r.content) == (200, b"")
    [logged] = hook.requests()
    assert logged["method"] == "POST" and logged["path"] == "/hook" and logged["status"] == 200
    assert logged["headers"]["content-type"] == DISTRIBUTION_EVENTS
    assert logged["headers"]["x-okura-signature"] == "sha256=00"
    assert logged["json"] == body and json.loads(logged["body"]) == body
    assert abs(logged["received_at"] - time.time()) < 10
    assert httpx.get(f"{hook.base_url}/healthz").status_code == 200
    assert len(hook.requests()) == 1, "health checks are not logged"


def test_status_and_redirect_are_logged_without_events(hook: Receiver) -> None:
    hook.set_mode("status", status=503, headers={"Retry-After": "1"})
    r = post(hook, {"events": [{"id": "1"}]})
    assert r.status_code == 503 and r.headers["retry-after"] == "1"
    hook.set_mode("redirect", location="http://127.0.0.1:1/elsewhere")
    r = post(hook, {"events": [{"id": "2"}]}, follow_redirects=False)
    assert r.status_code == 307 and r.headers["location"] == "http://127.0.0.1:1/elsewhere"
    assert [x["status"] for x in hook.requests()] == [503, 307]
    assert hook.events() == []


def test_close_answers_nothing(hook: Receiver) -> None:
    hook.set_mode("close")
    with pytest.raises(httpx.RemoteProtocolError):
        post(hook, {"events": []})
    [logged] = hook.requests()
    assert logged["status"] is None and logged["mode"] == "close"


def test_hang_and_slow(hook: Receiver) -> None:
    hook.set_mode("hang", delay=0.3)
    started = time.monotonic()
    assert post(hook, {"events": []}).status_code == 200
    assert time.monotonic() - started >= 0.3
    hook.set_mode("slow", delay=0.2)
    started = time.monotonic()
    assert post(hook, {"events": []}).status_code == 200
    assert time.monotonic() - started >= 0.2
    assert [x["status"] for x in hook.requests()] == [200, 200]


def test_a_hang_the_client_gives_up_on_is_logged_unanswered(hook: Receiver) -> None:
    hook.set_mode("hang")
    with pytest.raises(httpx.ReadTimeout):
        post(hook, {"events": [{"id": "1"}]}, timeout=0.3)
    [logged] = hook.wait_for(lambda rs: len(rs) == 1, timeout=3)
    assert logged["status"] is None and logged["mode"] == "hang"


def test_restart_keeps_the_port_and_the_log(hook: Receiver) -> None:
    port = hook.port
    post(hook, {"events": [{"id": "1"}]})
    hook.kill()
    with pytest.raises(httpx.ConnectError):
        post(hook, {"events": []})
    hook.restart()
    assert hook.port == port
    post(hook, {"events": [{"id": "2"}]})
    assert [e["id"] for e in hook.events()] == ["1", "2"]

    # SIGTERM while a request hangs: it is logged, unanswered; SIGKILL: never logged
    hook.set_mode("hang")
    errors: list[Exception] = []

    def hanging() -> None:
        try:
            post(hook, {"events": [{"id": "3"}]})
        except httpx.HTTPError as e:
            errors.append(e)

    thread = threading.Thread(target=hanging)
    thread.start()
    [flight] = hook.wait_for(lambda fs: len(fs) == 1, timeout=3, of="in_flight")
    assert flight["json"] == {"events": [{"id": "3"}]}
    hook.stop()
    thread.join(5)
    assert errors and not hook.alive()
    assert [r["status"] for r in hook.requests()] == [200, 200, None]
    hook.start()
    thread = threading.Thread(target=hanging)
    thread.start()
    hook.wait_for(bool, timeout=3, of="in_flight")
    hook.kill()
    thread.join(5)
    assert len(hook.requests()) == 3


def test_events_of_both_formats(hook: Receiver) -> None:
    post(hook, {"events": [{"id": "d1"}, {"id": "d2"}]})
    post(hook, {"specversion": "1.0", "id": "c1", "type": "t", "source": "s"}, CLOUDEVENT)
    post(hook, [{"specversion": "1.0", "id": "c2"}, {"specversion": "1.0", "id": "c3"}], CLOUDEVENTS_BATCH)
    hook.set_mode("status", status=500)
    post(hook, {"events": [{"id": "refused"}]})
    events = hook.wait_for(lambda evs: len(evs) == 5, timeout=2, of="events")
    assert [e["id"] for e in events] == ["d1", "d2", "c1", "c2", "c3"]


def test_wait_for_says_what_arrived(hook: Receiver) -> None:
    post(hook, {"events": [{"id": "only"}]})
    with pytest.raises(AssertionError, match=r"1 request\(s\) logged.*\n.*POST /hook -> 200"):
        hook.wait_for(lambda rs: len(rs) == 2, timeout=0.2)


def test_set_mode_rejects_what_the_receiver_does_not_know(hook: Receiver) -> None:
    with pytest.raises(ValueError, match="unknown receiver mode"):
        hook.set_mode("teapot")
    with pytest.raises(ValueError, match="unknown receiver options"):
        hook.set_mode("status", code=418)


def test_receivers_are_killed_at_exit(tmp_path: Path) -> None:
    with receivers(tmp_path) as start:
        a, b = start(), start()
        assert a.port != b.port and a.alive() and b.alive()
    assert not a.alive() and not b.alive()


def test_a_taken_port_is_given_up_on_the_first_start_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", allocate_port()))
        squatter.listen()
        ports = iter([squatter.getsockname()[1], allocate_port()])
        monkeypatch.setattr(receiver_module, "allocate_port", lambda: next(ports))
        with receivers(tmp_path) as start:
            hook = start()
            assert hook.port != squatter.getsockname()[1]
            assert "Address already in use" in hook.output_tail()
            hook.kill()
            hook._port = squatter.getsockname()[1]  # as if someone took its port while it was down
            with pytest.raises(RuntimeError, match="did not start"):
                hook.start()


def test_signatures(hook: Receiver) -> None:
    secret, body = b"s3cret", b'{"events":[]}'
    value = sign(secret, body)
    assert verify_signature(secret, body, value)
    assert verify_signature(secret, body, value.upper().replace("SHA256=", "sha256="))
    assert not verify_signature(b"other", body, value)
    assert not verify_signature(secret, body + b" ", value)
    assert not verify_signature(secret, body, value.removeprefix("sha256="))
    assert not verify_signature(secret, body, "")
    httpx.post(hook.url, content=body, headers={"X-Okura-Signature": value})
    [logged] = hook.requests()
    assert verify_signature(secret, body_bytes(logged), logged["headers"]["x-okura-signature"])
