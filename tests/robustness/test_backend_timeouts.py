"""Bounded waits on the back ends: a stuck S3 (its server paused with SIGSTOP) turns blob reads
into 503 UNAVAILABLE with Retry-After within storage.s3.call_timeout, cuts a blob body that
stalls midway, makes the probes say "storage", and service resumes by itself on SIGCONT.
The database timeouts are checked where they take effect (the engine's settings, a real
PostgreSQL cancelling a statement); a PostgreSQL that stops answering is the machine's own
behind a TCP proxy that stops forwarding (pausing the shared server is not an option)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import time
from collections.abc import Callable, Iterator

import httpx
import pytest
from sqlalchemy.engine import make_url

from registry.api.errors import render
from registry.config import ConfigError, load_config
from registry.errors import Unavailable
from registry.metadata.db import Database, pg_connect_args, without_statement_timeout
from storage import StorageUnavailable, create_storage
from storage.s3 import S3Storage
from tests.support.digests import sha256
from tests.support.postgres import create_database, drop_database
from tests.support.processes import signal_group
from tests.support.seaweedfs import ACCESS_KEY, SECRET_KEY, SeaweedFS, private_seaweedfs
from tests.support.tcp_proxy import PausableProxy

BUCKET = "okura-timeouts"
CONNECT, READ, CALL, ATTEMPTS = 1.0, 2.0, 4.0, 2
MiB = 1 << 20


# -- S3 paused under a real `okura serve` ---------------------------------------------------------


@pytest.fixture(scope="module")
def own_seaweedfs(tmp_path_factory) -> Iterator[SeaweedFS]:
    """A SeaweedFS of this module alone: the test pauses it (`weed server` is one process)."""
    with private_seaweedfs(str(tmp_path_factory.mktemp("seaweedfs-timeouts")), [BUCKET]) as server:
        yield server


def _env(s3: SeaweedFS) -> dict[str, str]:
    return {
        "OKURA_STORAGE_DRIVER": "s3",
        "OKURA_STORAGE_S3_BUCKET": BUCKET,
        "OKURA_STORAGE_S3_ENDPOINT_URL": s3.endpoint_url,
        "OKURA_STORAGE_S3_ACCESS_KEY": ACCESS_KEY,
        "OKURA_STORAGE_S3_SECRET_KEY": SECRET_KEY,
        "OKURA_STORAGE_S3_REDIRECT": "false",
        "OKURA_STORAGE_S3_CONNECT_TIMEOUT": f"{CONNECT:g}s",
        "OKURA_STORAGE_S3_READ_TIMEOUT": f"{READ:g}s",
        "OKURA_STORAGE_S3_CALL_TIMEOUT": f"{CALL:g}s",
        "OKURA_STORAGE_S3_MAX_ATTEMPTS": str(ATTEMPTS),
        "OKURA_CACHE_BLOB_BYTES": "0",  # every blob GET goes to S3
    }


def _push(client: httpx.Client, repo: str, data: bytes) -> str:
    digest = sha256(data)
    r = client.post(f"/v2/{repo}/blobs/uploads/", params={"digest": digest}, content=data)
    assert r.status_code == 201, r.text
    return digest


def _push_manifest(client: httpx.Client, repo: str, layer: bytes) -> bytes:
    config = b'{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}'
    _push(client, repo, config)
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": sha256(config),
                "size": len(config),
            },
            "layers": [
                {"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": sha256(layer), "size": len(layer)}
            ],
        }
    ).encode()
    r = client.put(
        f"/v2/{repo}/manifests/v1",
        content=manifest,
        headers={"Content-Type": "application/vnd.oci.image.manifest.v1+json"},
    )
    assert r.status_code == 201, r.text
    return manifest


def _stalled_stream_ends(client: httpx.Client, url: str, pause: Callable[[], None]) -> tuple[int, float]:
    """Start reading `url`, pause S3, read on: (bytes received, seconds from the drain to the end)."""
    with client.stream("GET", url) as r:
        assert r.status_code == 200
        chunks = r.iter_raw(64 << 10)
        received = len(next(chunks))
        pause()
        start = time.monotonic()
        with pytest.raises(httpx.HTTPError):  # a short body: the connection is dropped
            for chunk in chunks:
                received += len(chunk)
        return received, time.monotonic() - start


def _probe(client: httpx.Client) -> tuple[httpx.Response, float]:
    """/readyz where it exists (being added beside this test), else /healthz."""
    start = time.monotonic()
    r = client.get("/readyz")
    if r.status_code == 404:
        start = time.monotonic()
        r = client.get("/healthz")
    return r, time.monotonic() - start


@pytest.mark.e2e
def test_a_paused_s3_answers_503_in_bounded_time_and_service_resumes(own_seaweedfs, start_server):
    server = start_server(env=_env(own_seaweedfs))
    small, big = os.urandom(300_000), os.urandom(48 * MiB)
    paused = False

    def pause() -> None:
        nonlocal paused
        signal_group(own_seaweedfs.process, signal.SIGSTOP)
        paused = True

    try:
        with httpx.Client(base_url=server.url, timeout=30) as client:
            small_digest = _push(client, "slow/app", small)
            big_digest = _push(client, "slow/app", big)
            manifest = _push_manifest(client, "slow/app", small)
            assert client.get(f"/v2/slow/app/blobs/{small_digest}").content == small

            # A body that stalls midway ends within the bound: the connection is dropped.
            received, took = _stalled_stream_ends(client, f"/v2/slow/app/blobs/{big_digest}", pause)
            print(f"stalled body: {received} of {len(big)} bytes, dropped {took:.2f}s after the drain began")
            assert received < len(big)
            assert took < CALL + 3, took

            # A blob GET: 503 UNAVAILABLE with Retry-After within call_timeout (+2 s slack).
            start = time.monotonic()
            r = client.get(f"/v2/slow/app/blobs/{small_digest}")
            to_503 = time.monotonic() - start
            print(f"blob GET with S3 paused: {r.status_code} after {to_503:.2f}s")
            assert r.status_code == 503, r.text
            assert r.json()["errors"][0]["code"] == "UNAVAILABLE"
            assert int(r.headers["Retry-After"]) >= 1
            assert to_503 < CALL + 2, to_503

            # What needs only the database goes on: manifests live there, a blob HEAD is
            # answered from the metadata.
            r = client.get(
                "/v2/slow/app/manifests/v1", headers={"Accept": "application/vnd.oci.image.manifest.v1+json"}
            )
            assert r.status_code == 200 and r.content == manifest
            assert client.head(f"/v2/slow/app/blobs/{small_digest}").status_code == 200

            # The probe says why, within its own bound.
            r, took = _probe(client)
            print(f"{r.request.url.path} with S3 paused: {r.status_code} after {took:.2f}s: {r.text}")
            assert r.status_code == 503
            checks = r.json()["checks"]
            assert checks["storage"].startswith("failed") and checks["database"] == "ok", checks
            assert took < 6, took

            signal_group(own_seaweedfs.process, signal.SIGCONT)
            paused = False
            start = time.monotonic()
            while True:  # no restart: the same server serves again
                r = client.get(f"/v2/slow/app/blobs/{small_digest}")
                if r.status_code == 200 or time.monotonic() - start > 15:
                    break
                time.sleep(0.2)
            print(f"after SIGCONT: {r.status_code} within {time.monotonic() - start:.2f}s")
            assert r.status_code == 200 and r.content == small
            r = client.get(f"/v2/slow/app/blobs/{big_digest}")
            assert r.status_code == 200 and r.content == big
            assert _probe(client)[0].status_code == 200
            assert server.alive(), server.log_tail()
    finally:
        if paused:
            signal_group(own_seaweedfs.process, signal.SIGCONT)


# -- the S3 driver's deadline, against a server that accepts and never answers ---------------------


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A listening socket nobody accepts on: connections open (the backlog), nothing answers."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(64)
        yield s.getsockname()[1]


async def test_call_timeout_bounds_retries_times_timeouts(silent_port):
    # 3 attempts x 1 s read timeout (plus backoff) would exceed the 1.5 s bound.
    d = S3Storage(
        "b",
        endpoint_url=f"http://127.0.0.1:{silent_port}",
        access_key="k",
        secret_key="s",
        connect_timeout=0.5,
        read_timeout=1.0,
        call_timeout=1.5,
        max_attempts=3,
        concurrency=1,
    )
    await d.open()
    try:
        start = time.monotonic()
        with pytest.raises(StorageUnavailable, match=r"head_object gave no answer within 1.5s"):
            await d.stat("sha256:" + "0" * 64)
        assert time.monotonic() - start < 2.0
        # With the one thread still stuck, a queued call is given up as well, and never runs.
        start = time.monotonic()
        with pytest.raises(StorageUnavailable, match="head_bucket"):
            await d.check()
        assert time.monotonic() - start < 2.0
    finally:
        await d.close()


def test_s3_timeouts_come_from_the_config():
    env = {
        "OKURA_STORAGE_DRIVER": "s3",
        "OKURA_STORAGE_S3_BUCKET": "registry",
        "OKURA_STORAGE_S3_CONNECT_TIMEOUT": "2s",
        "OKURA_STORAGE_S3_READ_TIMEOUT": "7s",
        "OKURA_STORAGE_S3_CALL_TIMEOUT": "20s",
        "OKURA_STORAGE_S3_MAX_ATTEMPTS": "4",
    }
    cfg = load_config(environ=env)
    d = create_storage("s3", {"root": cfg.storage_root, "s3": cfg.storage.s3})
    assert isinstance(d, S3Storage)
    assert (d.connect_timeout, d.read_timeout, d.call_timeout, d.max_attempts) == (2, 7, 20, 4)
    client = d._make_client()
    assert (client.meta.config.connect_timeout, client.meta.config.read_timeout) == (2, 7)
    assert client.meta.config.retries == {"mode": "standard", "total_max_attempts": 4}
    defaults = load_config(environ={k: v for k, v in env.items() if "TIMEOUT" not in k and "ATTEMPTS" not in k})
    s3 = defaults.storage.s3
    assert (s3.connect_timeout, s3.read_timeout, s3.call_timeout, s3.max_attempts) == (5, 30, 60, 3)
    for bad, where in (
        ({"OKURA_STORAGE_S3_CALL_TIMEOUT": "8s"}, "storage.s3.call_timeout"),  # < connect + read
        ({"OKURA_STORAGE_S3_MAX_ATTEMPTS": "0"}, "storage.s3.max_attempts"),
        ({"OKURA_STORAGE_S3_READ_TIMEOUT": "0"}, "storage.s3.read_timeout"),
        ({"OKURA_STORAGE_S3_CONNECT_TIMEOUT": "0"}, "storage.s3.connect_timeout"),
    ):
        with pytest.raises(ConfigError, match=where):
            load_config(environ={**env, **bad})


# -- the database -----------------------------------------------------------------------------------


def test_database_timeouts_come_from_the_config():
    cfg = load_config(environ={})
    d = cfg.database
    assert (d.connect_timeout, d.statement_timeout, d.pool_timeout, d.call_timeout) == (10, 30, 10, 60)
    cfg = load_config(
        environ={
            "OKURA_DATABASE_CONNECT_TIMEOUT": "3s",
            "OKURA_DATABASE_STATEMENT_TIMEOUT": "0",
            "OKURA_DATABASE_POOL_TIMEOUT": "500ms",
            "OKURA_DATABASE_CALL_TIMEOUT": "0",
        }
    )
    d = cfg.database
    assert (d.connect_timeout, d.statement_timeout, d.pool_timeout, d.call_timeout) == (3, 0, 0.5, 0)
    assert pg_connect_args(3, 0) == {"timeout": 3}  # the server's default applies
    assert pg_connect_args(10, 1.5)["server_settings"] == {"statement_timeout": "1500"}
    for bad in (
        {"OKURA_DATABASE_STATEMENT_TIMEOUT": "200ms"},
        {"OKURA_DATABASE_POOL_TIMEOUT": "0"},
        {"OKURA_DATABASE_CALL_TIMEOUT": "500ms"},
    ):
        with pytest.raises(ConfigError, match=r"^database\.(statement|pool|call)_timeout"):
            load_config(environ=bad)


async def test_sqlite_lock_wait_is_the_statement_timeout(tmp_path):
    from sqlalchemy import text

    db = Database(f"sqlite:///{tmp_path}/t.db", pool_size=1, statement_timeout=2.5, pool_timeout=1)
    try:
        assert await db.read(lambda c: c.execute(text("PRAGMA busy_timeout")).scalar()) == 2500
        assert db._read_engine.pool.timeout() == 1
    finally:
        await db.close()
    db = Database(f"sqlite:///{tmp_path}/t.db", pool_size=1, statement_timeout=0)
    try:  # 0: SQLite's default wait, never "fail at once"
        assert await db.read(lambda c: c.execute(text("PRAGMA busy_timeout")).scalar()) == 30000
    finally:
        await db.close()


@pytest.fixture(scope="module")
def timeouts_pg_url() -> Iterator[str]:
    url = asyncio.run(create_database("okura_timeouts"))
    yield url
    asyncio.run(drop_database(url))


@pytest.mark.postgres
async def test_postgres_statement_and_pool_timeouts_are_unavailable(timeouts_pg_url):
    from sqlalchemy import text

    db = Database(timeouts_pg_url, pool_size=1, connect_timeout=3, statement_timeout=1, pool_timeout=0.5)
    try:
        assert db._async_engine.pool.timeout() == 0.5
        assert await db.read(lambda c: c.execute(text("SHOW statement_timeout")).scalar()) == "1s"
        # The server cancels a statement running past it: 503, with Retry-After.
        start = time.monotonic()
        with pytest.raises(Unavailable) as caught:
            await db.read(lambda c: c.execute(text("SELECT pg_sleep(5)")).scalar())
        assert time.monotonic() - start < 3
        assert caught.value.headers.get("Retry-After")
        # Migrations (and the pruner's snapshot) lift it for their transaction only.
        shown = await db.write(without_statement_timeout, lambda c: c.execute(text("SHOW statement_timeout")).scalar())
        assert shown == "0"
        assert await db.read(lambda c: c.execute(text("SELECT pg_sleep(0.1)")).scalar()) is None
        # Both pooled connections (pool_size + as many overflow) busy: a third waits
        # pool_timeout for one, then is Unavailable.
        sleeps = [
            asyncio.create_task(db.read(lambda c: c.execute(text("SELECT pg_sleep(0.8)")).scalar())) for _ in range(2)
        ]
        await asyncio.sleep(0.2)
        start = time.monotonic()
        with pytest.raises(Unavailable):
            await db.read(lambda c: c.execute(text("SELECT 1")).scalar())
        assert 0.4 < time.monotonic() - start < 2
        await asyncio.gather(*sleeps)
        assert await db.read(lambda c: c.execute(text("SHOW statement_timeout")).scalar()) == "1s"
    finally:
        await db.close()


CLOSE_GRACE = 2.0  # SQLAlchemy's graceful close of an invalidated asyncpg connection


@contextlib.contextmanager
def frozen_capable(pg_url: str) -> Iterator[tuple[PausableProxy, str]]:
    """A PausableProxy in front of the database of `pg_url`, and the URL through it."""
    url = make_url(pg_url)
    proxy = PausableProxy((url.host or "127.0.0.1", url.port or 5432))
    try:
        yield proxy, url.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
    finally:
        proxy.close()


@pytest.mark.postgres
async def test_a_postgres_that_stops_answering_is_unavailable_within_call_timeout(timeouts_pg_url):
    from sqlalchemy import text

    call = 2.0
    with frozen_capable(timeouts_pg_url) as (proxy, url):
        db = Database(url, pool_size=2, connect_timeout=1, statement_timeout=1, pool_timeout=1, call_timeout=call)

        def sleep(conn, seconds: float) -> None:
            conn.execute(text("SET LOCAL statement_timeout = 0"))
            conn.execute(text("SELECT pg_sleep(:s)"), {"s": seconds})

        try:
            assert await db.read(lambda c: c.execute(text("SELECT 1")).scalar()) == 1
            # On a live server: a call longer than the deadline is cut at it; an unbounded one
            # (migrations, the pruner's snapshot, which lift statement_timeout too) is not.
            for call_it in (db.read, db.write):  # cut inside the statement, whatever SQLAlchemy then raises
                start = time.monotonic()
                with pytest.raises(Unavailable):
                    await call_it(sleep, call + 1)
                assert call - 0.1 < time.monotonic() - start < call + 1
            await db.read(sleep, call + 1, bounded=False)
            proxy.pause()
            for what, call_it in (
                ("read", lambda: db.read(lambda c: c.execute(text("SELECT 1")).scalar())),
                ("write", lambda: db.write(lambda c: c.execute(text("SELECT 1")).scalar())),
            ):
                start = time.monotonic()
                with pytest.raises(Unavailable) as caught:
                    await call_it()
                took = time.monotonic() - start
                print(f"{what} with the database not answering: Unavailable after {took:.2f}s")
                # statement_timeout is the server's and never comes; the deadline is the bound,
                # plus the 2 s SQLAlchemy gives an abandoned connection to close gracefully.
                # (connect_timeout or pool_timeout may answer first: a new connection, or a pool
                # still held by a call being abandoned.)
                assert took < call + CLOSE_GRACE + 1, f"{what}: {took:.2f}s"
                assert caught.value.headers.get("Retry-After")
            proxy.resume()
            # Service is back by itself: the abandoned connections were closed, not pooled.
            for _ in range(6):
                assert await db.read(lambda c: c.execute(text("SELECT 1")).scalar()) == 1
                assert await db.write(lambda c: c.execute(text("SELECT 2")).scalar()) == 2
        finally:
            proxy.resume()
            await db.close()


@pytest.mark.e2e
@pytest.mark.postgres
def test_a_server_whose_database_stops_answering_answers_503_and_recovers(timeouts_pg_url, start_server):
    call = 3.0
    with frozen_capable(timeouts_pg_url) as (proxy, url):
        server = start_server(
            env={"OKURA_DATABASE_URL": url, "OKURA_DATABASE_CALL_TIMEOUT": f"{call:g}s", "OKURA_CACHE_MAX_BYTES": "0"}
        )
        try:
            with httpx.Client(base_url=server.url, timeout=30) as client:
                digest = _push(client, "frozen/app", b"before")
                proxy.pause()
                for method, path in (
                    ("GET", "/v2/frozen/app/manifests/latest"),
                    ("HEAD", f"/v2/frozen/app/blobs/{digest}"),
                    ("POST", "/v2/frozen/app/blobs/uploads/"),
                ):
                    start = time.monotonic()
                    r = client.request(method, path)
                    took = time.monotonic() - start
                    print(f"{method} {path} with the database not answering: {r.status_code} after {took:.2f}s")
                    assert r.status_code == 503, (method, path, r.status_code)
                    if method != "HEAD":
                        assert r.json()["errors"][0]["code"] == "UNAVAILABLE"
                    assert int(r.headers["Retry-After"]) >= 1
                    assert took < call + CLOSE_GRACE + 2, (method, path, took)
                r, took = _probe(client)
                assert r.status_code == 503 and r.json()["checks"]["database"].startswith("failed"), r.text
                assert took < 6, took

                proxy.resume()
                start = time.monotonic()
                while (r := client.head(f"/v2/frozen/app/blobs/{digest}")).status_code != 200:
                    assert time.monotonic() - start < 15, f"still {r.status_code} 15s after the database answered"
                    time.sleep(0.2)
                assert _push(client, "frozen/app", b"after").startswith("sha256:")
                assert _probe(client)[0].status_code == 200
                assert server.alive(), server.log_tail()
                assert "Traceback" not in server.log_tail(200), server.log_tail(200)
        finally:
            proxy.resume()


# -- Retry-After on every 503 ----------------------------------------------------------------------


def test_every_503_says_when_to_retry():
    from starlette.requests import Request

    for path in ("/v2/a/blobs/x", "/apis/image.openshift.io/v1/imagestreams"):
        request = Request({"type": "http", "method": "GET", "path": path, "headers": [], "query_string": b""})
        response = render(request, Unavailable("blob storage failed; the request was not completed"))
        assert response.status_code == 503 and response.headers["retry-after"] == "5"
        response = render(request, Unavailable("later", headers={"Retry-After": "1"}))
        assert response.headers["retry-after"] == "1"
    body = json.loads(render(request, Unavailable("x")).body)
    assert body["details"] == {"retryAfterSeconds": 5}
