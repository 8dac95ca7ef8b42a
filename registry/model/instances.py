"""The server processes using this database, each registered with the address it listens
on and a heartbeat. Commands run on another process (`okura get`) print image references
with a live server's address, as the API does."""

from __future__ import annotations

import hashlib
import os
import socket
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Connection, delete, select, update

from registry.config import Config
from registry.metadata.db import as_utc, utcnow
from registry.metadata.schema import instances
from registry.model.context import Registry

HEARTBEAT_SECONDS = 10.0
STALE_AFTER = 3 * HEARTBEAT_SECONDS  # a server silent this long is not counted as live
WILDCARDS = ("0.0.0.0", "::", "")


@dataclass(frozen=True)
class Instance:
    name: str
    address: str  # HOST:PORT it listens on (the host may be a wildcard)
    host: str  # the machine's host name
    version: str
    started_at: datetime
    heartbeat_at: datetime

    def reachable_at(self, from_host: str) -> str:
        """HOST:PORT a client on `from_host` reaches it at."""
        return reachable_address(self.address, self.host, from_host)


def reachable_address(address: str, server_host: str, from_host: str) -> str:
    """HOST:PORT a client on `from_host` reaches a server listening on `address` at (a
    wildcard is the server's host name, or localhost on that same host)."""
    host, _, port = address.rpartition(":")
    host = host.strip("[]")
    if host in WILDCARDS:
        host = "localhost" if from_host == server_host else server_host
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def instance_name(config: Config) -> str:
    """A name stable across restarts of the same server: the host name and a short hash of
    its data directory and address (several workers add their process id)."""
    digest = hashlib.sha256(f"{os.path.abspath(config.data_dir)}|{config.http.addr}".encode()).hexdigest()[:6]
    name = f"{socket.gethostname()}-{digest}"
    return f"{name}-{os.getpid()}" if config.http.workers > 1 else name


def this_instance(config: Config, version: str) -> Instance:
    now = utcnow()
    return Instance(instance_name(config), config.http.addr, socket.gethostname(), version, now, now)


async def register(reg: Registry, instance: Instance) -> None:
    def run(conn: Connection) -> None:
        conn.execute(delete(instances).where(instances.c.name == instance.name))
        conn.execute(
            instances.insert(),
            {
                "name": instance.name,
                "address": instance.address,
                "host": instance.host,
                "version": instance.version,
                "started_at": instance.started_at,
                "heartbeat_at": instance.heartbeat_at,
            },
        )

    await reg.db.write(run)


async def heartbeat(reg: Registry, name: str) -> None:
    await reg.db.write(
        lambda conn: conn.execute(update(instances).where(instances.c.name == name).values(heartbeat_at=utcnow()))
    )


async def unregister(reg: Registry, name: str) -> None:
    await reg.db.write(lambda conn: conn.execute(delete(instances).where(instances.c.name == name)))


async def live(reg: Registry) -> list[Instance]:
    """Instances heard from within STALE_AFTER, the most recently started first."""
    since = utcnow() - timedelta(seconds=STALE_AFTER)

    def run(conn: Connection) -> list[Instance]:
        rows = conn.execute(select(instances).order_by(instances.c.started_at.desc())).all()
        return [
            Instance(r.name, r.address, r.host, r.version, as_utc(r.started_at), as_utc(r.heartbeat_at))
            for r in rows
            if as_utc(r.heartbeat_at) >= since
        ]

    return await reg.db.read(run)
