"""Put changes of the Config resource made through another replica in effect here: at once
when the change feed says something changed (PostgreSQL NOTIFY, or a commit in this process),
else within instances.config_poll_interval (a one-row read either way)."""

from __future__ import annotations

import logging

from registry.errors import Unavailable
from registry.model import registry_config
from registry.model.context import Registry

log = logging.getLogger("okura.tasks")


async def run_forever(reg: Registry) -> None:
    failing = False
    while True:
        seen = reg.waiter.sequence
        try:
            await registry_config.refresh(reg)
            failing = False
        except Unavailable as e:
            if not failing:  # once per outage, not once per interval
                log.warning("registry config not refreshed: %s", e.message)
            failing = True
        await reg.waiter.wait(seen, reg.config.instances.config_poll_interval)
