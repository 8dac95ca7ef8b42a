"""Two replicas (separate processes' worth of state: own caches and data dirs) sharing one
PostgreSQL database: a change made through one is served by the other at once."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from tests.support.http import push_image
from tests.support.media_types import OCI_MANIFEST


@pytest.fixture
def backend() -> str:
    return "postgres"  # replicas share a database server; SQLite is single-host


async def _replicas(make_app, tmp_path):
    a = await make_app(data_dir=str(tmp_path / "replica-a"))
    b = await make_app(data_dir=str(tmp_path / "replica-b"))
    return (
        httpx.AsyncClient(transport=httpx.ASGITransport(app=a), base_url="http://a"),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=b), base_url="http://b"),
        b,
    )


async def _eventually(check, timeout: float = 2.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not await check():
        assert asyncio.get_running_loop().time() < deadline, "replica B kept serving stale data"
        await asyncio.sleep(0.01)


async def test_tag_moves_and_deletes_reach_the_other_replica(make_app, tmp_path):
    a, b, app_b = await _replicas(make_app, tmp_path)
    async with a, b:
        first, _ = await push_image(a, "team/app", "v1")
        await asyncio.sleep(0.2)  # let A's own notifications land before B caches
        r = await b.get("/v2/team/app/manifests/v1", headers={"Accept": OCI_MANIFEST})
        assert r.headers["Docker-Content-Digest"] == first  # now cached in B
        assert app_b.app.state.runtime.registry.cache.get("team/app", ("manifest", "v1")) is not None

        second, _ = await push_image(a, "team/app", "v1")  # the tag moves through A

        async def b_serves_second() -> bool:
            r = await b.get("/v2/team/app/manifests/v1", headers={"Accept": OCI_MANIFEST})
            return r.headers.get("Docker-Content-Digest") == second

        await _eventually(b_serves_second)
        tags = (await b.get("/v2/team/app/tags/list")).json()["tags"]
        assert tags == ["v1"]
        await push_image(a, "team/app", "v2")

        async def b_lists_v2() -> bool:
            return (await b.get("/v2/team/app/tags/list")).json()["tags"] == ["v1", "v2"]

        await _eventually(b_lists_v2)

        assert (await a.delete(f"/v2/team/app/manifests/{second}")).status_code == 202

        async def b_forgot_it() -> bool:
            r = await b.get(f"/v2/team/app/manifests/{second}", headers={"Accept": OCI_MANIFEST})
            return r.status_code == 404

        await _eventually(b_forgot_it)


async def test_cache_is_bypassed_while_the_change_feed_is_down(make_app, tmp_path):
    a, b, app_b = await _replicas(make_app, tmp_path)
    async with a, b:
        await push_image(a, "team/app", "v1")
        await asyncio.sleep(0.2)
        await b.get("/v2/team/app/manifests/v1", headers={"Accept": OCI_MANIFEST})
        cache = app_b.app.state.runtime.registry.cache
        assert cache.get("team/app", ("manifest", "v1")) is not None
        # The database drops the listening connection (as on a failover or a restart).
        import asyncpg

        admin = await asyncpg.connect(app_b.app.state.runtime.registry.config.database_url)
        try:
            await admin.execute("SELECT pg_terminate_backend($1)", cache.feed._conn.get_server_pid())
        finally:
            await admin.close()
        # Notifications sent while it was down are lost: the entry must not survive the outage
        # (bypassed while disconnected, retired on reconnect).
        await _eventually(lambda: asyncio.sleep(0, result=cache.get("team/app", ("manifest", "v1")) is None))
        await _eventually(lambda: asyncio.sleep(0, result=cache.feed.connected), timeout=10)
        assert cache.get("team/app", ("manifest", "v1")) is None
        r = await b.get("/v2/team/app/manifests/v1", headers={"Accept": OCI_MANIFEST})
        assert r.status_code == 200
