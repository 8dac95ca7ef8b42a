"""Keep this server process registered while it runs: every heartbeat interval, check the
database and the storage (Ready when both answer and it is not draining), report it, refresh
the Config resource's conditions, and remove entries of servers long gone."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from collections.abc import Awaitable, Callable

from registry.errors import Unavailable
from registry.model import instances, registry_config
from registry.model.context import Registry
from registry.periodic import result_within
from storage.base import StorageMissing, StorageUnavailable

log = logging.getLogger("okura.tasks")

CHECK_TIMEOUT = 5.0  # a check slower than this fails (and the next heartbeat is not delayed long)


async def _problem(
    check: Awaitable[None], timeout: float, what: str, describe: Callable[[Exception], str]
) -> str | None:
    """None when `check` passes within `timeout`, else what went wrong."""
    try:
        await result_within(check, timeout)  # a slow check finishes on its own, within its deadlines
        return None
    except TimeoutError:
        return f"{what} did not answer within {timeout:g}s"
    except Exception as e:  # any failure means not ready; say which
        return describe(e)


def _storage_failure(driver: str) -> Callable[[Exception], str]:
    """Failures as "Reason: message", the reason being what StorageExists shows."""

    def describe(e: Exception) -> str:
        if isinstance(e, StorageMissing):
            return f"{'NoSuchBucket' if driver == 's3' else 'StorageMissing'}: {e}"
        if isinstance(e, StorageUnavailable):
            return f"StorageUnavailable: {e}"
        return f"StorageError: {str(e)[:300] or type(e).__name__}"

    return describe


def _database_failure(e: Exception) -> str:
    return f"the database is unreachable: {str(e)[:300] or type(e).__name__}"


async def _beat(reg: Registry, me: instances.Instance | None) -> instances.Instance:
    timeout = min(CHECK_TIMEOUT, max(reg.config.instances.heartbeat_interval, 1.0))
    storage_error, database_error = await asyncio.gather(
        _problem(
            reg.storage.check(), timeout, "StorageTimeout: the storage", _storage_failure(reg.config.storage.driver)
        ),
        _problem(reg.db.ping(), timeout, "the database", _database_failure),
    )
    draining = reg.settings.draining
    reason = "draining" if draining else database_error or storage_error
    state = {
        "ready": reason is None,
        "phase": instances.TERMINATING if draining else instances.RUNNING,
        "not_ready_reason": reason,
        "storage_error": storage_error,
        "config_generation": reg.settings.current.generation,
    }
    if me is None:
        me = await instances.register(reg, dataclasses.replace(reg.instance, **state))
        reg.instance = me
        log.info("registered as %s", me.name, extra={"restarts": me.restarts, "address": me.address})
    else:
        await instances.report(reg, me.name, **state)
    await registry_config.reconcile_status(reg)
    await instances.remove_expired(reg, reg.config.instances.retention)
    return me


async def run_forever(reg: Registry) -> None:
    me: instances.Instance | None = None
    try:
        while True:
            try:
                me = await _beat(reg, me)
            except Unavailable as e:
                log.warning("instance heartbeat skipped: %s", e.message)
            await asyncio.sleep(reg.config.instances.heartbeat_interval)
    finally:
        if me is not None:
            with contextlib.suppress(Exception):  # shutting down: a stale row ages out anyway
                await asyncio.shield(instances.stopped(reg, me.name, me.uid))
