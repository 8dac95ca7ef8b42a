"""The server processes using this database (OpenShift's registry pods): each registers with
a stable name, the address it listens on, its version, start time and restart count, and
reports a heartbeat with its readiness (database and storage answer, not draining).

Commands run on another process (`okura get`) print image references with a live server's
address; `okura get pods`, the pods API and the Config resource's status list them. A clean
exit keeps the row (marked stopped) so the name's restart count survives; stopped and lost
entries are removed after `instances.retention`.
"""

from __future__ import annotations

import hashlib
import os
import socket
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, delete, or_, select, update

from registry.config import Config
from registry.kube.meta import new_uid
from registry.metadata.db import as_utc, utcnow
from registry.metadata.schema import instances
from registry.model.context import Registry

WILDCARDS = ("0.0.0.0", "::", "")

RUNNING, TERMINATING, STOPPED = "Running", "Terminating", "Stopped"


@dataclass(frozen=True)
class Instance:
    name: str
    address: str  # HOST:PORT it listens on (the host may be a wildcard)
    host: str  # the machine's host name
    version: str
    started_at: datetime
    heartbeat_at: datetime
    scheme: str = "http"
    restarts: int = 0
    ready: bool = False
    phase: str = RUNNING
    not_ready_reason: str | None = None
    storage_error: str | None = None  # "Reason: message" of the last storage check
    config_generation: int = 0
    uid: str = ""
    stopped_at: datetime | None = None

    def reachable_at(self, from_host: str) -> str:
        """HOST:PORT a client on `from_host` reaches it at."""
        return reachable_address(self.address, self.host, from_host)

    def url(self, from_host: str) -> str:
        return f"{self.scheme}://{self.reachable_at(from_host)}"

    def stale(self, now: datetime, timeout: float) -> bool:
        return now - self.heartbeat_at > timedelta(seconds=timeout)

    def status(self, now: datetime, timeout: float) -> str:
        """STATUS as `oc get pods` shows it: Running, NotReady, Terminating or Unknown."""
        if self.phase == TERMINATING and not self.stale(now, timeout):
            return "Terminating"
        if self.stale(now, timeout):
            return "Unknown"
        return "Running" if self.ready else "NotReady"


def reachable_address(address: str, server_host: str, from_host: str) -> str:
    """HOST:PORT a client on `from_host` reaches a server listening on `address` at (a
    wildcard is the server's host name, or localhost on that same host)."""
    host, _, port = address.rpartition(":")
    host = host.strip("[]")
    if host in WILDCARDS:
        host = "localhost" if from_host == server_host else server_host
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def instance_name(config: Config) -> str:
    """http.instance_name, else a name stable across restarts of the same server: the host
    name and a short hash of its data directory and address (several workers add their
    process id)."""
    if config.http.instance_name:
        name = config.http.instance_name
    else:
        digest = hashlib.sha256(f"{os.path.abspath(config.data_dir)}|{config.http.addr}".encode()).hexdigest()[:6]
        name = f"{socket.gethostname().split('.')[0].lower()}-{digest}"
    return f"{name}-{os.getpid()}" if config.http.workers > 1 else name


def this_instance(config: Config, version: str) -> Instance:
    now = utcnow()
    scheme = "https" if config.http.tls.certificate else "http"
    name, address = instance_name(config), advertised_address(config)
    return Instance(name, address, socket.gethostname(), version, now, now, scheme, uid=new_uid())


def advertised_address(config: Config) -> str:
    """The listen address, its wildcard host replaced by http.advertise_host when one is set."""
    host, _, port = config.http.addr.rpartition(":")
    advertise = config.http.advertise_host.strip("[]")
    if advertise and host.strip("[]") in WILDCARDS:
        return f"[{advertise}]:{port}" if ":" in advertise else f"{advertise}:{port}"
    return config.http.addr


def _instance(r: Any) -> Instance:
    return Instance(
        r.name,
        r.address,
        r.host,
        r.version,
        as_utc(r.started_at),
        as_utc(r.heartbeat_at),
        r.scheme,
        r.restarts,
        bool(r.ready),
        r.phase,
        r.not_ready_reason,
        r.storage_error,
        r.config_generation,
        r.uid or "",
        as_utc(r.stopped_at) if r.stopped_at else None,
    )


async def register(reg: Registry, instance: Instance) -> Instance:
    """Register this process; a name seen before counts one more restart."""

    def run(conn: Connection) -> Instance:
        old = conn.execute(select(instances.c.restarts).where(instances.c.name == instance.name)).first()
        registered = replace(instance, restarts=old.restarts + 1 if old else 0)
        conn.execute(delete(instances).where(instances.c.name == instance.name))
        conn.execute(
            instances.insert(),
            {
                "name": registered.name,
                "address": registered.address,
                "host": registered.host,
                "version": registered.version,
                "started_at": registered.started_at,
                "heartbeat_at": registered.heartbeat_at,
                "scheme": registered.scheme,
                "restarts": registered.restarts,
                "ready": registered.ready,
                "phase": registered.phase,
                "not_ready_reason": registered.not_ready_reason,
                "storage_error": registered.storage_error,
                "config_generation": registered.config_generation,
                "uid": registered.uid,
                "stopped_at": None,
            },
        )
        return registered

    return await reg.db.write(run)


async def report(
    reg: Registry,
    name: str,
    *,
    ready: bool,
    phase: str,
    not_ready_reason: str | None,
    storage_error: str | None,
    config_generation: int,
) -> None:
    await reg.db.write(
        lambda conn: conn.execute(
            update(instances)
            .where(instances.c.name == name)
            .values(
                heartbeat_at=utcnow(),
                ready=ready,
                phase=phase,
                not_ready_reason=not_ready_reason[:500] if not_ready_reason else None,
                storage_error=storage_error[:500] if storage_error else None,
                config_generation=config_generation,
            )
        )
    )


async def stopped(reg: Registry, name: str, uid: str) -> None:
    """A clean exit: the row stays (for the restart count) until the retention removes it."""
    await reg.db.write(
        lambda conn: conn.execute(
            update(instances)
            .where(instances.c.name == name, instances.c.uid == uid)
            .values(phase=STOPPED, ready=False, stopped_at=utcnow())
        )
    )


async def remove_expired(reg: Registry, retention: float) -> int:
    """Remove entries stopped, or silent, for longer than `retention` seconds."""
    cutoff = utcnow() - timedelta(seconds=retention)

    def run(conn: Connection) -> int:
        return conn.execute(
            delete(instances).where(
                or_(instances.c.heartbeat_at < cutoff, instances.c.stopped_at < cutoff),
            )
        ).rowcount

    return await reg.db.write(run)


async def registered(reg: Registry) -> list[Instance]:
    """Every registered server that has not exited cleanly (lost ones included), the most
    recently started first."""

    def run(conn: Connection) -> list[Instance]:
        rows = conn.execute(
            select(instances).where(instances.c.stopped_at.is_(None)).order_by(instances.c.started_at.desc())
        ).all()
        return [_instance(r) for r in rows]

    return await reg.db.read(run)


async def get(reg: Registry, name: str) -> Instance | None:
    row = await reg.db.read(lambda conn: conn.execute(select(instances).where(instances.c.name == name)).first())
    return _instance(row) if row is not None and row.stopped_at is None else None


async def live(reg: Registry) -> list[Instance]:
    """Instances heard from within the heartbeat timeout, the most recently started first."""
    now = utcnow()
    timeout = reg.config.instances.heartbeat_timeout
    return [i for i in await registered(reg) if not i.stale(now, timeout)]
