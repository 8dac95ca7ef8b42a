"""Server registrations (registry/model/instances.py) on SQLite and PostgreSQL: restart counts
follow a name, a clean exit keeps the row for that count, lost and stopped entries are
removed after the retention, and the STATUS a pod list shows."""

from __future__ import annotations

import dataclasses
from datetime import timedelta

import pytest
from sqlalchemy import update

from registry.config import config_from_dict
from registry.metadata.db import utcnow
from registry.metadata.schema import instances as table
from registry.model import instances
from tests.support.backends import SQL_BACKENDS


@pytest.fixture(params=SQL_BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return request.param


def server(name: str) -> instances.Instance:
    config = config_from_dict({"http": {"instance_name": name, "addr": "0.0.0.0:5000"}})
    return instances.this_instance(config, "1.2.3")


async def age(reg, name: str, seconds: float, column: str = "heartbeat_at") -> None:
    when = utcnow() - timedelta(seconds=seconds)
    await reg.db.write(lambda conn: conn.execute(update(table).where(table.c.name == name).values({column: when})))


async def test_restarts_follow_the_name_and_survive_a_clean_exit(registry_model):
    reg = registry_model
    first = await instances.register(reg, server("image-registry-a"))
    assert first.restarts == 0 and first.name == "image-registry-a"
    await instances.stopped(reg, first.name, first.uid)
    assert [i.name for i in await instances.registered(reg)] == []  # a stopped server is not listed
    again = await instances.register(reg, server("image-registry-a"))
    assert again.restarts == 1 and again.uid != first.uid
    third = await instances.register(reg, server("image-registry-a"))  # killed, then started: no clean exit
    assert third.restarts == 2
    other = await instances.register(reg, server("image-registry-b"))
    assert other.restarts == 0
    assert {i.name for i in await instances.registered(reg)} == {"image-registry-a", "image-registry-b"}
    # A late `stopped` of an earlier run of the name does not touch the current one.
    await instances.stopped(reg, first.name, first.uid)
    assert {i.name for i in await instances.registered(reg)} == {"image-registry-a", "image-registry-b"}


async def test_reports_and_status(registry_model):
    reg = registry_model
    me = await instances.register(reg, server("image-registry-a"))
    now = utcnow()
    assert me.status(now, 30) == "NotReady"  # not ready until its first checks pass
    await instances.report(
        reg,
        me.name,
        ready=True,
        phase=instances.RUNNING,
        not_ready_reason=None,
        storage_error=None,
        config_generation=3,
    )
    (shown,) = await instances.registered(reg)
    assert shown.ready and shown.config_generation == 3 and shown.status(utcnow(), 30) == "Running"
    assert shown.status(utcnow() + timedelta(seconds=31), 30) == "Unknown"
    draining = dataclasses.replace(shown, phase=instances.TERMINATING, ready=False)
    assert draining.status(utcnow(), 30) == "Terminating"
    await age(reg, me.name, 60)
    assert await instances.live(reg) == []  # silent past the timeout (30 s by default)
    assert [i.name for i in await instances.registered(reg)] == [me.name]  # but still listed, as Unknown


async def test_lost_and_stopped_entries_go_after_the_retention(registry_model):
    reg = registry_model
    for name in ("lost-recently", "lost-long-ago", "stopped-long-ago", "alive"):
        await instances.register(reg, server(name))
    await age(reg, "lost-recently", 120)
    await age(reg, "lost-long-ago", 7200)
    stopped = await instances.get(reg, "stopped-long-ago")
    await instances.stopped(reg, stopped.name, stopped.uid)
    await age(reg, "stopped-long-ago", 7200, "stopped_at")
    assert await instances.remove_expired(reg, 3600) == 2
    assert {i.name for i in await instances.registered(reg)} == {"lost-recently", "alive"}


def test_names():
    config = config_from_dict({"data_dir": "/srv/okura", "http": {"addr": "0.0.0.0:5000"}})
    default = instances.instance_name(config)
    assert default == instances.instance_name(config)  # stable across restarts
    other = config_from_dict({"data_dir": "/srv/other", "http": {"addr": "0.0.0.0:5000"}})
    assert instances.instance_name(other) != default
    named = config_from_dict({"http": {"instance_name": "image-registry-7d9f-abcde"}})
    assert instances.instance_name(named) == "image-registry-7d9f-abcde"
    with pytest.raises(ValueError, match=r"http\.instance_name"):
        config_from_dict({"http": {"instance_name": "Not_A_Label"}})


def test_advertised_address():
    def address(addr: str, advertise: str = "") -> str:
        config = config_from_dict({"http": {"addr": addr, "advertise_host": advertise}})
        return instances.this_instance(config, "1").address

    assert address("0.0.0.0:5000") == "0.0.0.0:5000"  # a wildcard: reached at the host name
    assert address("0.0.0.0:5000", "10.128.2.17") == "10.128.2.17:5000"  # the pod IP
    assert address("[::]:5000", "fd00::17") == "[fd00::17]:5000"
    assert address("127.0.0.1:5001", "10.128.2.17") == "127.0.0.1:5001"  # a specific address stays
    assert instances.reachable_address(address("0.0.0.0:5000", "10.1.2.3"), "pod-a", "pod-b") == "10.1.2.3:5000"
    with pytest.raises(ValueError, match=r"http\.advertise_host"):
        config_from_dict({"http": {"advertise_host": "10.0.0.1:5000"}})
