"""ChangeWaiter: the background jobs wait on it, and are cancelled in that wait when a server
stops. A cancellation must never be lost, whenever it comes relative to the wake-up: a lost
one left a job waiting again and the server never exited (Python 3.11's asyncio.wait_for
returns normally when the awaited thing ends as the cancellation arrives)."""

from __future__ import annotations

import asyncio

import pytest

from registry.cache import Generation
from registry.model.changes import ChangeWaiter


@pytest.fixture
async def waiter():
    generation = Generation()
    waiter = ChangeWaiter(generation)
    yield waiter
    await waiter.close()
    generation.close()


async def test_wakes_on_a_change(waiter):
    task = asyncio.create_task(waiter.wait(waiter.sequence, 30))
    await asyncio.sleep(0.01)
    assert not task.done()
    waiter.committed()  # from this thread: through call_soon_threadsafe
    async with asyncio.timeout(5):
        await task
    assert waiter.sequence == 1


async def test_times_out(waiter):
    async with asyncio.timeout(5):
        await waiter.wait(waiter.sequence, 0.05)
    assert waiter.sequence == 0


@pytest.mark.parametrize("yields", range(8))
async def test_a_cancellation_as_the_wait_ends_is_not_lost(waiter, yields):
    # The wake-up and the cancellation in the same loop iteration, and then `yields` iterations
    # apart: each interleaving of the event, the timeout machinery and the cancel.
    task = asyncio.create_task(waiter.wait(waiter.sequence, 30))
    await asyncio.sleep(0.01)
    waiter.notified(None)
    for _ in range(yields):
        await asyncio.sleep(0)
    if task.cancel():  # False when the wait had already ended: nothing to lose then
        with pytest.raises(asyncio.CancelledError):
            await task
    else:
        assert task.result() is None


async def test_a_job_loop_stops_when_cancelled_at_a_wake_up(waiter):
    # The shape of every background job: wait for a change, do something, wait again.
    async def job() -> None:
        while True:
            await waiter.wait(waiter.sequence, 30)

    for yields in range(8):
        task = asyncio.create_task(job())
        await asyncio.sleep(0.01)
        waiter.notified(None)
        for _ in range(yields):
            await asyncio.sleep(0)
        task.cancel()
        await asyncio.wait({task}, timeout=5)
        assert task.cancelled(), f"the job went on waiting ({yields} yields between wake-up and cancel)"
