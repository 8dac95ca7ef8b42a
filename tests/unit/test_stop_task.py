"""registry.periodic.stop_task: stops a task whatever it raised, and never eats a cancellation
of the caller (a supervisor stopped at shutdown while it restarts a child must stop too)."""

from __future__ import annotations

import asyncio

from registry.periodic import stop_task


async def test_stops_a_waiting_task():
    task = asyncio.create_task(asyncio.sleep(30))
    await asyncio.sleep(0)
    await stop_task(task)
    assert task.cancelled()


async def test_a_failed_or_finished_task_is_fine():
    async def fail() -> None:
        raise RuntimeError("its own failure")

    failed = asyncio.create_task(fail())
    finished = asyncio.create_task(asyncio.sleep(0))
    await asyncio.sleep(0.01)
    await stop_task(failed)
    await stop_task(finished)
    assert finished.result() is None


async def test_the_callers_cancellation_propagates():
    stopping = asyncio.Event()

    async def stubborn() -> None:  # takes a while to end once cancelled
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            stopping.set()
            await asyncio.sleep(0.2)
            raise

    async def supervisor() -> None:
        child = asyncio.create_task(stubborn())
        await asyncio.sleep(0)
        await stop_task(child)
        await asyncio.sleep(30)  # what a supervisor does next: it must not get here

    task = asyncio.create_task(supervisor())
    await stopping.wait()
    task.cancel()  # while it waits for the child
    await asyncio.wait({task}, timeout=5)
    assert task.cancelled()
