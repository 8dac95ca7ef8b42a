"""Scheduled runs, driven deterministically through `tick(reg, now)` with the registry's clock
moved by hand and an injected prune function."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest_asyncio

from registry.metadata import leases
from registry.pruning import resource, schedule
from registry.runtime import open_runtime
from tests.support.clock import START

DAY2 = datetime(2030, 1, 2, tzinfo=UTC)  # the first midnight after START (resource created at START)


def at(hour: int, minute: int = 0, second: int = 0, day: int = 2) -> datetime:
    return datetime(2030, 1, day, hour, minute, second, tzinfo=UTC)


async def tick(reg, clock, when, fake_prune, **kw):
    clock.set(when)
    return await schedule.tick(reg, when, prune=fake_prune, **kw)


async def obj(reg):
    return await resource.current_object(reg)


def condition(o, type_):
    return next(c for c in o["status"]["conditions"] if c["type"] == type_)


@pytest_asyncio.fixture
async def reg(registry_model, clock):
    await resource.get_pruner(registry_model)  # created at START, as a server would on its first tick
    return registry_model


async def test_a_due_schedule_runs_once(reg, clock, fake_prune):
    assert await tick(reg, clock, START, fake_prune) is None
    assert await tick(reg, clock, at(23, 59, 59, day=1), fake_prune) is None
    assert fake_prune.calls == []

    record = await tick(reg, clock, at(0, 0, 30), fake_prune)
    assert record is not None
    assert (record.trigger, record.outcome) == ("scheduled", "succeeded")
    assert record.counts == {
        "tagRevisions": 2,
        "manifests": 1,
        "repositoryBlobs": 3,
        "blobs": 4,
        "bytesFreed": 5 * 1024 * 1024,
        "orphans": 0,
    }
    assert len(fake_prune.calls) == 1
    options = fake_prune.calls[0]
    assert options.confirm is True
    assert (options.keep_tag_revisions, options.keep_younger_than) == (3, 3600)
    assert options.grace_period == reg.config.pruner.grace_period
    assert options.prune_registry is True and options.ignore_invalid_refs is True

    # The next ticks of the same day find nothing due.
    assert await tick(reg, clock, at(0, 1), fake_prune) is None
    assert await tick(reg, clock, at(23, 59), fake_prune) is None
    assert len(fake_prune.calls) == 1

    o = await obj(reg)
    status = o["status"]
    assert status["lastScheduleTime"] == "2030-01-02T00:00:00Z"
    assert status["lastSuccessfulTime"] == "2030-01-02T00:00:30Z"
    assert status["nextScheduleTime"] == "2030-01-03T00:00:00Z"
    assert status["lastRun"]["outcome"] == "succeeded"
    assert status["lastRun"]["message"].startswith("Deleted 2 image stream tag item(s), 1 manifest(s)")
    assert [(r["trigger"], r["outcome"]) for r in status["runs"]] == [("scheduled", "succeeded")]
    assert status["runs"][0]["startTime"] == "2030-01-02T00:00:30Z"

    # The next day's run happens.
    assert (await tick(reg, clock, at(0, 0, 10, day=3), fake_prune)) is not None
    assert len(fake_prune.calls) == 2


async def test_spec_options_reach_the_prune_function(reg, clock, fake_prune):
    await resource.patch_object(
        reg,
        {
            "spec": {
                "keepTagRevisions": 1,
                "keepYoungerThanDuration": "90s",
                "pruneRegistry": False,
                "ignoreInvalidImageReferences": False,
            }
        },
    )
    await tick(reg, clock, at(0, 5), fake_prune)
    options = fake_prune.calls[0]
    assert (options.keep_tag_revisions, options.keep_younger_than) == (1, 90)
    assert options.prune_registry is False and options.ignore_invalid_refs is False


async def test_suspend_stops_runs_and_resume_restarts_them(reg, clock, fake_prune):
    clock.set(at(23, 0, day=1))
    await resource.set_suspend(reg, True)
    o = await obj(reg)
    scheduled = condition(o, "Scheduled")
    assert (scheduled["status"], scheduled["reason"], scheduled["message"]) == (
        "False",
        "Suspended",
        "The pruner job has been suspended",
    )
    assert scheduled["lastTransitionTime"] == "2030-01-01T23:00:00Z"
    assert condition(o, "Available")["lastTransitionTime"] == "2030-01-01T12:00:00Z"
    assert "nextScheduleTime" not in o["status"]

    assert await tick(reg, clock, at(0, 0, 30), fake_prune) is None
    assert await tick(reg, clock, at(0, 30), fake_prune) is None
    assert fake_prune.calls == []

    # Resumed within the starting deadline: the missed midnight run happens now (as a CronJob's would).
    clock.set(at(0, 40))
    state, changed = await resource.set_suspend(reg, False)
    assert changed and state.generation == 3
    o = await obj(reg)
    scheduled = condition(o, "Scheduled")
    assert (scheduled["status"], scheduled["reason"]) == ("True", "Scheduled")
    assert scheduled["lastTransitionTime"] == "2030-01-02T00:40:00Z"
    assert o["status"]["observedGeneration"] == 3
    record = await tick(reg, clock, at(0, 41), fake_prune)
    assert record is not None and record.outcome == "succeeded"
    assert len(fake_prune.calls) == 1


async def test_a_failed_run_sets_failed_and_a_success_clears_it(reg, clock, fake_prune):
    await resource.patch_object(reg, {"spec": {"schedule": "0 * * * *"}})
    fake_prune.fail = "storage exploded"
    record = await tick(reg, clock, at(13, 0, 5, day=1), fake_prune)
    assert record is not None
    assert (record.outcome, record.message) == ("failed", "storage exploded")
    o = await obj(reg)
    failed = condition(o, "Failed")
    assert (failed["status"], failed["reason"], failed["message"]) == ("True", "PruneFailed", "storage exploded")
    assert failed["lastTransitionTime"] == "2030-01-01T13:00:05Z"
    assert o["status"]["lastRun"]["outcome"] == "failed"
    assert "lastSuccessfulTime" not in o["status"]

    # Failing again keeps the transition time.
    record = await tick(reg, clock, at(14, 0, 5, day=1), fake_prune)
    assert record.outcome == "failed"
    assert condition(await obj(reg), "Failed")["lastTransitionTime"] == "2030-01-01T13:00:05Z"

    fake_prune.fail = None
    record = await tick(reg, clock, at(15, 0, 5, day=1), fake_prune)
    assert record.outcome == "succeeded"
    failed = condition(await obj(reg), "Failed")
    assert (failed["status"], failed["reason"], failed["message"]) == (
        "False",
        "Complete",
        "Pruner completed successfully",
    )
    assert failed["lastTransitionTime"] == "2030-01-01T15:00:05Z"


async def test_history_limits_hold_for_successes_and_failures_separately(reg, clock, fake_prune):
    await resource.patch_object(reg, {"spec": {"schedule": "0 * * * *", "failedJobsHistoryLimit": 2}})
    for hour in range(13, 18):  # 5 successes
        assert (await tick(reg, clock, at(hour, 0, 1, day=1), fake_prune)).outcome == "succeeded"
    runs = (await obj(reg))["status"]["runs"]
    assert [r["startTime"][11:16] for r in runs] == ["17:00", "16:00", "15:00"]  # newest first, 3 kept

    fake_prune.fail = "boom"
    for hour in range(18, 22):  # 4 failures
        assert (await tick(reg, clock, at(hour, 0, 1, day=1), fake_prune)).outcome == "failed"
    runs = (await obj(reg))["status"]["runs"]
    assert [(r["outcome"], r["startTime"][11:16]) for r in runs] == [
        ("failed", "21:00"),
        ("failed", "20:00"),
        ("succeeded", "17:00"),
        ("succeeded", "16:00"),
        ("succeeded", "15:00"),
    ]

    # Lowering a limit trims at once; a limit of 0 keeps none, but status still names the last run.
    await resource.patch_object(reg, {"spec": {"successfulJobsHistoryLimit": 1, "failedJobsHistoryLimit": 0}})
    o = await obj(reg)
    assert [(r["outcome"], r["startTime"][11:16]) for r in o["status"]["runs"]] == [("succeeded", "17:00")]
    assert o["status"]["lastRun"]["outcome"] == "failed"


async def test_a_due_time_missed_by_more_than_an_hour_is_not_run(reg, clock, fake_prune):
    assert await tick(reg, clock, at(1, 0, 1), fake_prune) is None  # midnight + 1h0m1s
    assert fake_prune.calls == []
    o = await obj(reg)
    assert o["status"]["lastMissedScheduleTime"] == "2030-01-02T00:00:00Z"
    assert "lastScheduleTime" not in o["status"]
    assert o["status"]["runs"] == []
    assert o["status"]["nextScheduleTime"] == "2030-01-03T00:00:00Z"
    assert await tick(reg, clock, at(5, 0), fake_prune) is None
    # The next due time runs normally.
    assert await tick(reg, clock, at(0, 2, day=3), fake_prune) is not None
    assert len(fake_prune.calls) == 1


async def test_a_due_time_within_the_hour_still_runs(reg, clock, fake_prune):
    record = await tick(reg, clock, at(0, 59, 59), fake_prune)
    assert record is not None and record.outcome == "succeeded"


async def test_replicas_creating_the_resource_at_once_share_one(registry_model, clock):
    async with open_runtime(registry_model.config, storage=False) as runtime:
        other = runtime.registry
        states = await asyncio.gather(*(resource.get_pruner(r) for r in (registry_model, other, registry_model)))
        assert {(s.generation, s.created_at) for s in states} == {(1, START)}


async def test_two_replicas_ticking_at_once_run_one_prune(reg, clock, fake_prune):
    # A second replica on the same database and storage.
    async with open_runtime(reg.config) as runtime:
        other = runtime.registry
        fake_prune.delay = 0.3
        when = clock.set(at(0, 0, 5))
        results = await asyncio.gather(
            schedule.tick(reg, when, prune=fake_prune), schedule.tick(other, when, prune=fake_prune)
        )
        assert len(fake_prune.calls) == 1
        assert sorted(r is not None for r in results) == [False, True]
        # And afterwards neither runs that due time again.
        results = await asyncio.gather(
            schedule.tick(reg, when, prune=fake_prune), schedule.tick(other, when, prune=fake_prune)
        )
        assert results == [None, None]
        assert len(fake_prune.calls) == 1
        assert fake_prune.max_running == 1


async def test_a_run_in_progress_elsewhere_forbids_a_second_one(reg, clock, fake_prune):
    clock.set(at(0, 0, 5))
    assert await leases.acquire(reg.db, schedule.LEASE, ttl=60, holder="replica-b")
    assert await tick(reg, clock, at(0, 0, 10), fake_prune) is None
    assert fake_prune.calls == []
    await leases.release(reg.db, schedule.LEASE, holder="replica-b")
    assert await tick(reg, clock, at(0, 0, 40), fake_prune) is not None


async def test_a_dead_holders_run_is_taken_over_after_the_lease_expires(reg, clock, fake_prune):
    # Replica B took the lease and started a run, then died.
    clock.set(at(0, 0, 1))
    assert await leases.acquire(reg.db, schedule.LEASE, ttl=schedule.LEASE_TTL, holder="replica-b")
    dead_run, _ = await resource.begin_manual_run(reg)
    assert await tick(reg, clock, at(0, 1), fake_prune) is None  # its lease is still live
    # After the lease's TTL this replica takes over, marks B's run interrupted and runs.
    record = await tick(reg, clock, at(0, 1, 31), fake_prune)
    assert record is not None and record.outcome == "succeeded"
    runs = {r.id: r for r in await resource.list_runs(reg)}
    assert runs[dead_run].outcome == "failed"
    assert runs[dead_run].message == resource.INTERRUPTED


async def test_losing_the_lease_mid_run_stops_the_run(reg, clock, fake_prune):
    clock.set(at(0, 0, 5))
    holder = schedule.holder_for(reg)

    async def stolen(reg_, options):
        # Another process takes the lease over (as if ours had expired).
        await leases.release(reg.db, schedule.LEASE, holder=holder)
        assert await leases.acquire(reg.db, schedule.LEASE, ttl=600, holder="thief")
        await asyncio.sleep(30)
        raise AssertionError("not stopped")

    record = await asyncio.wait_for(schedule.tick(reg, at(0, 0, 5), prune=stolen, lease_ttl=0.3), 10)
    assert record is not None
    assert record.outcome == "failed"
    assert "lease" in record.message
    assert condition(await obj(reg), "Failed")["reason"] == "LeaseLost"


async def test_the_loop_runs_due_schedules_and_records_a_shutdown(reg, clock, fake_prune):
    clock.set(at(0, 0, 5))
    fake_prune.delay = 30
    task = asyncio.create_task(schedule.run_forever(reg, interval=0.02, prune=fake_prune))
    try:
        for _ in range(200):
            if fake_prune.calls:
                break
            await asyncio.sleep(0.02)
        assert len(fake_prune.calls) == 1
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    runs = await resource.list_runs(reg)
    assert [(r.outcome, r.message) for r in runs] == [("failed", schedule.STOPPED)]
    assert await leases.acquire(reg.db, schedule.LEASE, ttl=1, holder="x")  # released on the way out
