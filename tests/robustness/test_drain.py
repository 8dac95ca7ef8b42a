"""Probes and graceful shutdown of real `okura serve` processes: /livez and /readyz, and the
drain on SIGTERM (not ready at once, still serving for http.shutdown_delay, then open requests
finish within http.drain_timeout, what is left is cut, exit status 0)."""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator

import httpx
import pytest

from tests.support.servers import OkuraServer

pytestmark = pytest.mark.e2e

CUT_GRACE = 1.0  # registry/server/options.py Drain.cut_grace: after the cut, before cancelling
SLACK = 2.0  # process exit and a loaded 2-core machine
DRAINS: list[tuple[str, float]] = []  # (test, seconds from SIGTERM to exit)


@pytest.fixture(scope="module", autouse=True)
def report_longest_drain() -> Iterator[None]:
    yield
    if DRAINS:
        name, seconds = max(DRAINS, key=lambda d: d[1])
        print(f"\nlongest drain measured: {seconds:.2f}s ({name}); all: {DRAINS}")


def drain_env(delay: str, timeout: str = "10s") -> dict[str, str]:
    return {"OKURA_HTTP_SHUTDOWN_DELAY": delay, "OKURA_HTTP_DRAIN_TIMEOUT": timeout}


def poll(condition: Callable[[], bool], timeout: float, what: str) -> float:
    """Wait for `condition`, checked every 50 ms; the monotonic time it became true."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"{what}: not within {timeout}s"
        time.sleep(0.05)
    return time.monotonic()


def terminate(server: OkuraServer) -> float:
    os.kill(server.pid, signal.SIGTERM)
    return time.monotonic()


def wait_exit(server: OkuraServer, since: float, timeout: float, name: str) -> float:
    """Wait for the process to exit with status 0; the seconds it took since `since`."""
    assert server.proc is not None
    server.proc.wait(timeout)
    took = time.monotonic() - since
    DRAINS.append((name, round(took, 2)))
    assert server.proc.returncode == 0, server.log_tail()
    return took


def status(url: str) -> int | None:
    """The status of GET `url` on a new connection, None when the server does not serve it."""
    try:
        return httpx.get(url, timeout=2.0).status_code
    except httpx.TransportError:
        return None


def refused(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1.0).close()
        return False
    except ConnectionRefusedError:
        return True


def test_probes(server):
    for path in ("/livez", "/readyz"):
        r = httpx.get(server.url + path)
        assert r.status_code == 200, r.text
        assert r.headers["cache-control"] == "no-cache"
        assert httpx.head(server.url + path).status_code == 200
    assert httpx.get(server.url + "/livez").json() == {"status": "ok"}
    ready = {"status": "ok", "checks": {"database": "ok", "storage": "ok", "draining": "ok"}}
    assert httpx.get(server.url + "/readyz").json() == ready

    # As in test_ops: take the storage root away (chmod does not stop root).
    root, aside = server.data_dir / "blobs", server.data_dir / "blobs-aside"
    shutil.move(root, aside)
    try:
        r = httpx.get(server.url + "/readyz", timeout=10)
        assert r.status_code == 503
        body = r.json()
        assert body["status"] == "unavailable"
        assert body["checks"]["storage"].startswith("failed"), body
        assert body["checks"]["database"] == body["checks"]["draining"] == "ok"
        assert httpx.get(server.url + "/livez").status_code == 200  # no backend is asked
    finally:
        shutil.move(aside, root)
    assert httpx.get(server.url + "/readyz").json() == ready


def test_not_ready_at_once_and_serving_during_the_delay(start_server):
    delay = 2.0
    server = start_server(env=drain_env("2s"))
    signalled = terminate(server)
    turned = poll(lambda: status(server.url + "/readyz") == 503, 1.0, "/readyz 503 after SIGTERM")
    body = httpx.get(server.url + "/readyz").json()
    assert body["checks"]["draining"].startswith("failed"), body

    # New connections are still served until the delay is over, then refused.
    last_served = turned
    while (code := status(server.url + "/v2/")) == 200:
        last_served = time.monotonic()
        assert last_served - signalled < delay + SLACK, "still accepting after the delay"
        time.sleep(0.05)  # the pace of the requests, not a wait for something
    assert code is None
    assert last_served - signalled >= delay - 0.3, f"stopped serving {last_served - signalled:.2f}s after SIGTERM"
    poll(lambda: refused(server.port), SLACK, "connections refused")
    wait_exit(server, signalled, delay + SLACK, "shutdown_delay 2s, idle")


def chunks(size: int, chunk: int) -> Iterator[bytes]:
    """`size` bytes of random-looking data, the same every time."""
    block = hashlib.sha256(b"drain").digest() * (chunk // 32)
    for i in range(size // chunk):
        yield i.to_bytes(4, "big") + block[4:]


def test_push_in_flight_completes(start_server):
    size, chunk, seconds = 64 << 20, 1 << 20, 3.0
    digest = "sha256:" + hashlib.sha256(b"".join(chunks(size, chunk))).hexdigest()
    server = start_server(env=drain_env("500ms", "15s"))
    sent_some = threading.Event()

    def body() -> Iterator[bytes]:
        pause = seconds / (size // chunk)
        for i, part in enumerate(chunks(size, chunk)):
            if i == 8:
                sent_some.set()
            yield part
            time.sleep(pause)  # the upload's pace: it is still going when SIGTERM arrives

    result: dict[str, httpx.Response | BaseException] = {}

    def push() -> None:
        try:
            result["r"] = httpx.post(
                f"{server.url}/v2/drain/app/blobs/uploads/",
                params={"digest": digest},
                content=body(),
                headers={"Content-Length": str(size), "Content-Type": "application/octet-stream"},
                timeout=30,
            )
        except BaseException as e:
            result["r"] = e

    pusher = threading.Thread(target=push)
    pusher.start()
    assert sent_some.wait(10), "the push did not start"
    signalled = terminate(server)
    pusher.join(30)
    r = result["r"]
    assert isinstance(r, httpx.Response), r
    assert r.status_code == 201, r.text
    took = wait_exit(server, signalled, 15 + SLACK, "64 MiB push in flight")
    assert took >= 1.0, "exited before the push could finish"

    server.start()  # the same data directory
    h = hashlib.sha256()
    with httpx.stream("GET", f"{server.url}/v2/drain/app/blobs/{digest}", timeout=30) as r:
        assert r.status_code == 200
        for part in r.iter_bytes():
            h.update(part)
    assert "sha256:" + h.hexdigest() == digest


def test_stuck_request_is_cut_at_drain_timeout(start_server):
    delay, drain = 1.0, 2.0
    server = start_server(env=drain_env("1s", "2s"))
    stuck = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    head = (
        "POST /v2/stuck/app/blobs/uploads/?digest=sha256:" + "0" * 64 + " HTTP/1.1\r\n"
        "Host: 127.0.0.1\r\nContent-Type: application/octet-stream\r\nContent-Length: 1000000\r\n\r\n"
    )
    stuck.sendall(head.encode() + b"x" * 1000)  # and never the rest
    signalled = terminate(server)
    took = wait_exit(server, signalled, delay + drain + CUT_GRACE + SLACK, "stuck request, drain_timeout 2s")
    assert took >= delay + drain - 0.3, f"exited after {took:.2f}s: the open request was not waited for"
    assert "1 cut" in server.log_tail(), server.log_tail()  # a warning
    with stuck:  # closed by the server: end of stream or a reset, not a hang (the timeout)
        try:
            while stuck.recv(65536):
                pass
        except ConnectionResetError:
            pass


def test_workers_drain(start_server):
    server = start_server(workers=2, env=drain_env("1s", "5s"))
    signalled = terminate(server)  # the supervisor only, as Kubernetes does
    # The supervisor passes SIGTERM on within half a second; each worker marks itself draining.
    poll(lambda: status(server.url + "/readyz") == 503, 2.0, "/readyz 503 after SIGTERM")
    wait_exit(server, signalled, 1 + 5 + SLACK, "2 workers, idle")
    poll(lambda: not group_alive(server.pid), SLACK, "the workers exit")
    assert refused(server.port)


def group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
        return True
    except ProcessLookupError:
        return False
