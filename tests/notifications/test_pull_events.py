"""Pull events: off by default; on, a pull storm writes a few sampled events (one per repository,
digest and interval in a process), each saying how many pulls it stands for."""

from __future__ import annotations

import asyncio

import pytest

from registry.model import events
from registry.notifications import pulls
from tests.support.backends import SQL_BACKENDS
from tests.support.http import push_image

pytestmark = pytest.mark.parametrize("backend", SQL_BACKENDS, indirect=True)

OCI = {"Accept": "application/vnd.oci.image.manifest.v1+json"}


async def pull_events(reg) -> list[events.LoggedEvent]:
    return [e for e in await reg.db.read(events.after, 0, 10_000) if e.event.action == events.PULL]


async def wait_for_pulls(reg, count: int) -> list[events.LoggedEvent]:
    for _ in range(100):
        found = await pull_events(reg)
        if len(found) >= count:
            return found
        await asyncio.sleep(0.02)
    return await pull_events(reg)


async def test_pulls_are_not_logged_by_default(client, registry_model):
    await push_image(client, "team/app", "v1")
    for _ in range(3):
        assert (await client.get("/v2/team/app/manifests/v1", headers=OCI)).status_code == 200
    await asyncio.sleep(0.1)
    assert await pull_events(registry_model) == []


async def test_a_pull_storm_is_sampled(make_app, connect):
    pulls._last.clear()
    pulls._pending.clear()
    app = await make_app(notifications={"pull_events": True, "pull_event_interval": "1h"})
    client = connect(app)
    reg = app.app.state.runtime.registry
    digest, _ = await push_image(client, "team/storm", "v1")
    for _ in range(50):
        assert (await client.get("/v2/team/storm/manifests/v1", headers=OCI)).status_code == 200
    [event] = await wait_for_pulls(reg, 1)
    assert (event.event.repository, event.event.digest, event.event.tag) == ("team/storm", digest, "v1")
    assert event.event.pulls == 1
    await asyncio.sleep(0.1)
    assert len(await pull_events(reg)) == 1  # the other 49 wait for the next interval


async def test_the_next_sample_counts_the_pulls_in_between(make_app, connect):
    pulls._last.clear()
    pulls._pending.clear()
    app = await make_app(notifications={"pull_events": True, "pull_event_interval": "200ms"})
    client = connect(app)
    reg = app.app.state.runtime.registry
    await push_image(client, "team/count", "v1")
    for _ in range(5):
        await client.get("/v2/team/count/manifests/v1", headers=OCI)
    await asyncio.sleep(0.25)
    await client.get("/v2/team/count/manifests/v1", headers=OCI)
    found = await wait_for_pulls(reg, 2)
    assert [e.event.pulls for e in found] == [1, 5]
