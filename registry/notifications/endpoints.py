"""The webhook endpoints in effect: the config file's (notifications.endpoints) and those added
through the API (NotificationEndpoint objects in the database, registry/model/
notification_endpoints.py: their secrets sealed at rest, opened here). A name in the config
file cannot be taken by the API: the config's endpoint is the one delivered to."""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy import Connection, select

from registry.config import EndpointConfig
from registry.metadata.schema import notification_endpoints
from registry.model import notification_endpoints as api_endpoints
from registry.model.context import Registry

log = logging.getLogger("okura.notifications")


def _stored(conn: Connection) -> list[tuple[str, dict[str, Any]]]:
    return [
        (r.name, r.spec) for r in conn.execute(select(notification_endpoints.c.name, notification_endpoints.c.spec))
    ]


def from_spec(name: str, spec: dict[str, Any]) -> EndpointConfig:
    """An API object's spec (its secret opened) as an endpoint (ValueError naming the field when
    it is wrong). The model validates writes with the same parse: what it stores, this reads."""
    return api_endpoints.endpoint_config(name, spec)


async def effective(reg: Registry) -> list[EndpointConfig]:
    found = list(reg.config.notifications.endpoints)
    names = {e.name for e in found}
    for name, spec in await reg.db.read(_stored):
        if name in names:
            continue
        try:
            found.append(from_spec(name, api_endpoints.opened_spec(reg, name, spec)))
        except ValueError as e:
            # Checked when written; a stored one that fails (or whose secret does not open:
            # another secrets key) is skipped, loudly.
            log.warning("notification endpoint skipped", extra={"endpoint": name, "error": str(e)})
    return found
