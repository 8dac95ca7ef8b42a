"""Leases in the metadata database: the holder of a named lease runs that job; a dead
holder's lease expires and another process takes over."""

from __future__ import annotations

import os
import socket
import uuid
from datetime import timedelta

from sqlalchemy import Connection, delete, select, update

from registry.metadata.db import Database, as_utc, utcnow
from registry.metadata.schema import leases

HOLDER = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


async def acquire(db: Database, name: str, ttl: float, holder: str = HOLDER) -> bool:
    """Take or renew the lease. True when `holder` holds it until now + ttl."""

    def take(conn: Connection) -> bool:
        now = utcnow()
        expires = now + timedelta(seconds=ttl)
        row = conn.execute(select(leases.c.holder, leases.c.expires_at).where(leases.c.name == name)).first()
        if row is None:
            conn.execute(db.insert_ignore(leases, "name"), {"name": name, "holder": holder, "expires_at": expires})
            return conn.execute(select(leases.c.holder).where(leases.c.name == name)).scalar() == holder
        if row.holder != holder and as_utc(row.expires_at) > now:
            return False
        return bool(
            conn.execute(
                update(leases)
                .where(leases.c.name == name, leases.c.holder == row.holder)
                .values(holder=holder, expires_at=expires)
            ).rowcount
        )

    return await db.write(take)


async def release(db: Database, name: str, holder: str = HOLDER) -> None:
    await db.write(lambda conn: conn.execute(delete(leases).where(leases.c.name == name, leases.c.holder == holder)))
