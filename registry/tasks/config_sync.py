"""Put changes of the Config resource made through another replica in effect here within
instances.config_poll_interval (a one-row read per interval)."""

from __future__ import annotations

import asyncio
import logging

from registry.errors import Unavailable
from registry.model import registry_config
from registry.model.context import Registry

log = logging.getLogger("okura.tasks")


async def run_forever(reg: Registry) -> None:
    failing = False
    while True:
        try:
            await registry_config.refresh(reg)
            failing = False
        except Unavailable as e:
            if not failing:  # once per outage, not once per interval
                log.warning("registry config not refreshed: %s", e.message)
            failing = True
        await asyncio.sleep(reg.config.instances.config_poll_interval)
