"""Keep this server process registered in the database while it runs."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from registry.errors import Unavailable
from registry.model import instances
from registry.model.context import Registry

log = logging.getLogger("okura.tasks")


async def run_forever(reg: Registry, instance: instances.Instance) -> None:
    registered = False
    try:
        while True:
            try:
                if not registered:
                    await instances.register(reg, instance)
                    registered = True
                else:
                    await instances.heartbeat(reg, instance.name)
            except Unavailable as e:
                log.warning("instance heartbeat skipped: %s", e.message)
            await asyncio.sleep(instances.HEARTBEAT_SECONDS)
    finally:
        if registered:
            with contextlib.suppress(Exception):  # shutting down: a stale row ages out anyway
                await asyncio.shield(instances.unregister(reg, instance.name))
