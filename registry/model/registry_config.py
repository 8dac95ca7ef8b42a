"""The registry's Config resource (`configs.imageregistry.operator.openshift.io/cluster`) in
the database, and the settings it puts in effect in this process.

One row named "cluster", created from the config file on first use and shared by every
replica. `spec` is what was written; `applied` is the spec in effect (an Unmanaged spec is
stored but not applied, as the operator stops reconciling). Each process holds the applied
settings in `reg.settings` (a LiveSettings): the process that writes a change applies it at
once, the others at once through the change feed, within
instances.config_poll_interval at the latest (registry/tasks/config_sync.py).
Status is derived from the registered replicas (registry/model/instances.py); conditions are
stored so their transition times persist, and each change of them is in the change log.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, select, update

from registry.errors import ResourceConflict
from registry.kube.meta import new_uid
from registry.kube.values import singleton_metadata
from registry.logs import apply_log_level
from registry.metadata.db import as_utc, utcnow
from registry.metadata.schema import instances as instances_table
from registry.metadata.schema import registry_configs
from registry.model import changes
from registry.model.changes import ADDED, MODIFIED, Change
from registry.model.registry_config_spec import (
    API_VERSION,
    GROUP,
    KIND,
    NAME,
    PLURAL,
    UNMANAGED,
    Effective,
    Invalid,
    ReplicaView,
    conditions,
    effective,
    effective_storage,
    initial_spec,
    metadata_from_object,
    next_applied,
    spec_from_object,
    timestamp,
)

if TYPE_CHECKING:
    from registry.config import Config
    from registry.model.context import Registry

log = logging.getLogger("okura.config")


@dataclass
class ConfigState:
    generation: int
    spec: dict[str, Any]
    applied: dict[str, Any]
    applied_generation: int
    conditions: list[dict[str, Any]]
    created_at: datetime
    uid: str
    resource_version: int
    labels: dict[str, str]
    annotations: dict[str, str]


def _state(row: Any) -> ConfigState:
    return ConfigState(
        generation=row.generation,
        spec=dict(row.spec),
        applied=dict(row.applied),
        applied_generation=row.applied_generation,
        conditions=list(row.conditions or []),
        created_at=as_utc(row.created_at),
        uid=row.uid,
        resource_version=row.resource_version,
        labels=dict(row.labels or {}),
        annotations=dict(row.annotations or {}),
    )


def _initial_state(config: Config) -> ConfigState:
    spec = initial_spec(config)
    return ConfigState(1, spec, copy.deepcopy(spec), 1, [], utcnow(), "", 0, {}, {})


# -- the settings in effect -----------------------------------------------------------------------


class LiveSettings:
    """The Config in effect in this process; `current` is read on every request."""

    def __init__(self, config: Config, manage_logging: bool = False) -> None:
        self.config = config
        self.manage_logging = manage_logging  # servers set their log level from logLevel
        self.current = Effective()
        self.resource_version = -1  # of the row last applied
        self.draining = False  # set on shutdown: this replica reports itself not ready

    def apply(self, state: ConfigState) -> None:
        self.resource_version = state.resource_version
        new = effective(state.applied, state.applied_generation, self.config)
        if new == self.current:
            return
        old, self.current = self.current, new
        if self.manage_logging and (new.log_level != old.log_level or old.generation == 0):
            apply_log_level(new.log_level, self.config.log.level)
        if old.generation:
            log.info(
                "registry config applied",
                extra={
                    "generation": new.generation,
                    "managementState": new.management_state,
                    "readOnly": new.read_only,
                    "logLevel": new.log_level,
                    "disableRedirect": new.disable_redirect,
                },
            )


# -- the stored resource --------------------------------------------------------------------------


def _select_row(conn: Connection, lock: bool = False) -> Any:
    query = select(registry_configs).where(registry_configs.c.name == NAME)
    if lock:
        query = query.with_for_update()
    return conn.execute(query).first()


def _stamp(conn: Connection, reg: Registry, type_: str) -> None:
    """Record the change in the change log; its id is the resourceVersion. (The change log
    must be the transaction's last write.)"""
    (change_id,) = changes.record(reg.db, conn, [Change(PLURAL, None, NAME, type_)])
    conn.execute(update(registry_configs).where(registry_configs.c.name == NAME).values(resource_version=change_id))


def _ensure(conn: Connection, reg: Registry) -> Any:
    """The row, locked; created from the config file when missing (replicas racing to create
    it all read the one that won)."""
    row = _select_row(conn, lock=True)
    if row is not None:
        return row
    state = _initial_state(reg.config)
    now = utcnow()
    inserted = conn.execute(
        reg.db.insert_ignore(registry_configs, "name"),
        {
            "name": NAME,
            "generation": 1,
            "spec": state.spec,
            "applied": state.applied,
            "applied_generation": 1,
            "conditions": [],
            "created_at": now,
            "updated_at": now,
            "uid": new_uid(),
        },
    ).rowcount
    if inserted:
        _stamp(conn, reg, ADDED)
    return _select_row(conn, lock=True)


async def get_state(reg: Registry) -> ConfigState:
    """The resource, created from the config file on first use."""
    row = await reg.db.read(_select_row)
    if row is None:
        row = await reg.db.write(_ensure, reg)
    return _state(row)


async def load(reg: Registry, create: bool) -> None:
    """Put the stored Config in effect in this process (`create`: store it first when
    missing; read-only commands use the config file's initial spec instead)."""
    if reg.settings is None:
        reg.settings = LiveSettings(reg.config)
    if create:
        state = await get_state(reg)
    else:
        row = await reg.db.read(_select_row)
        state = _state(row) if row is not None else _initial_state(reg.config)
    reg.settings.apply(state)


async def refresh(reg: Registry) -> bool:
    """Apply the stored Config if it changed since this process last applied it; True then."""
    version = await reg.db.read(
        lambda conn: conn.execute(
            select(registry_configs.c.resource_version).where(registry_configs.c.name == NAME)
        ).scalar()
    )
    if version is None or version == reg.settings.resource_version:
        return False
    row = await reg.db.read(_select_row)
    reg.settings.apply(_state(row))
    return True


def _conflict() -> ResourceConflict:
    return ResourceConflict(
        f'Operation cannot be fulfilled on {PLURAL}.{GROUP} "{NAME}": the object has been modified; '
        "please apply your changes to the latest version and try again",
        kind=PLURAL,
        group=GROUP,
        name=NAME,
    )


async def set_spec(
    reg: Registry,
    spec: dict[str, Any],
    metadata: tuple[dict[str, str], dict[str, str]] | None = None,
    expect_version: int | None = None,
) -> tuple[ConfigState, bool]:
    """Store a normalised spec (and, given, the labels and annotations) and put it in effect
    here; True when anything changed. With `expect_version`, only if the resourceVersion is
    still that (else 409 Conflict)."""

    def write(conn: Connection) -> tuple[Any, bool]:
        row = _ensure(conn, reg)
        if expect_version is not None and row.resource_version != expect_version:
            raise _conflict()
        labels, annotations = (
            metadata if metadata is not None else (dict(row.labels or {}), dict(row.annotations or {}))
        )
        meta_changed = (labels, annotations) != (dict(row.labels or {}), dict(row.annotations or {}))
        spec_changed = dict(row.spec) != spec
        if not spec_changed and not meta_changed:
            return row, False
        generation = row.generation + 1 if spec_changed else row.generation
        applied = next_applied(spec, dict(row.applied))
        applied_generation = generation if spec["managementState"] != UNMANAGED else row.applied_generation
        replicas = _replica_views(conn, reg, utcnow())
        conn.execute(
            update(registry_configs)
            .where(registry_configs.c.name == NAME)
            .values(
                generation=generation,
                spec=spec,
                applied=applied,
                applied_generation=applied_generation,
                conditions=conditions(spec, replicas, list(row.conditions or []), utcnow()),
                updated_at=utcnow(),
                labels=labels or None,
                annotations=annotations or None,
            )
        )
        _stamp(conn, reg, MODIFIED)
        return _select_row(conn), True

    row, changed = await reg.db.write(write)
    state = _state(row)
    if reg.settings is not None:
        reg.settings.apply(state)
    if changed:
        log.info(
            "registry config changed",
            extra={"generation": state.generation, "managementState": state.spec["managementState"]},
        )
    return state, changed


async def apply_object(
    reg: Registry, body: Any, expect_version: int | None = None, keep_metadata: bool = False
) -> tuple[ConfigState, bool]:
    """Replace the spec, labels and annotations with a whole object's (PUT, `okura config
    apply`; `keep_metadata`: the spec only)."""
    spec = spec_from_object(body, reg.config)
    metadata = None if keep_metadata else metadata_from_object(body)
    return await set_spec(reg, spec, metadata=metadata, expect_version=expect_version)


async def preview_object(reg: Registry, body: Any, expect_version: int | None = None) -> dict[str, Any]:
    """A dry run: the object as storing `body` would leave it, validated, nothing stored."""
    state = await get_state(reg)
    if expect_version is not None and expect_version != state.resource_version:
        raise _conflict()
    spec = spec_from_object(body, reg.config)
    labels, annotations = metadata_from_object(body)
    generation = state.generation + (1 if spec != state.spec else 0)
    would = dataclasses.replace(state, spec=spec, generation=generation, labels=labels, annotations=annotations)
    return await reg.db.read(lambda conn: render(reg, conn, would))


def editable_object(state: ConfigState) -> dict[str, Any]:
    """What a patch applies to: the object without status."""
    metadata: dict[str, Any] = {"name": NAME, "resourceVersion": str(state.resource_version)}
    if state.labels:
        metadata["labels"] = dict(state.labels)
    if state.annotations:
        metadata["annotations"] = dict(state.annotations)
    return {"apiVersion": API_VERSION, "kind": KIND, "metadata": metadata, "spec": copy.deepcopy(state.spec)}


async def patch_object(reg: Registry, apply: Callable[[dict[str, Any]], Any]) -> tuple[ConfigState, bool]:
    """Apply a patch (a function of the editable object). When another writer changes the
    object in between, the patch is applied again to the new one, unless it names a
    resourceVersion (then 409)."""
    for _ in range(10):
        current = await get_state(reg)
        patched = apply(editable_object(current))
        spec = spec_from_object(patched, reg.config)
        named = _named_version(patched)
        expect = named if named is not None else current.resource_version
        try:
            return await set_spec(reg, spec, metadata=metadata_from_object(patched), expect_version=expect)
        except ResourceConflict:
            if named is not None and named != current.resource_version:
                raise
    raise Invalid([("", "the Config kept changing while patching it; try again")])


def _named_version(obj: Any) -> int | None:
    version = ((obj.get("metadata") or {}) if isinstance(obj, dict) else {}).get("resourceVersion")
    return int(version) if isinstance(version, str) and version.isdigit() and len(version) < 19 else None


# -- status ---------------------------------------------------------------------------------------


def _replica_views(conn: Connection, reg: Registry, now: datetime) -> list[ReplicaView]:
    timeout = reg.config.instances.heartbeat_timeout
    rows = conn.execute(select(instances_table).where(instances_table.c.stopped_at.is_(None))).all()
    views = []
    for r in rows:
        heartbeat = as_utc(r.heartbeat_at)
        lost = (now - heartbeat).total_seconds() > timeout
        views.append(ReplicaView(r.name, bool(r.ready), lost, r.not_ready_reason, r.storage_error, heartbeat))
    return views


def _observed_generation(conn: Connection, reg: Registry, state: ConfigState, now: datetime) -> int:
    """The generation every live replica has applied (an Unmanaged spec is observed when
    stored: there is nothing to apply)."""
    if state.spec["managementState"] == UNMANAGED:
        return state.generation
    timeout = reg.config.instances.heartbeat_timeout
    rows = conn.execute(
        select(instances_table.c.config_generation, instances_table.c.heartbeat_at).where(
            instances_table.c.stopped_at.is_(None)
        )
    ).all()
    applied = [r.config_generation for r in rows if (now - as_utc(r.heartbeat_at)).total_seconds() <= timeout]
    if not applied:
        return state.applied_generation
    return min(min(applied), state.applied_generation)


async def reconcile_status(reg: Registry) -> bool:
    """Store the conditions the replicas now give when any changed (so their transition
    times persist and watchers see it); True when they did. Every replica runs this with its
    heartbeat; they agree, so racing writes are harmless."""

    def changed(conn: Connection, row: Any) -> list[dict[str, Any]] | None:
        """The conditions to store, or None when they are what is stored."""
        previous = list(row.conditions or [])
        now = utcnow()
        fresh = conditions(dict(row.spec), _replica_views(conn, reg, now), previous, now)
        return None if _condition_keys(fresh) == _condition_keys(previous) else fresh

    def write(conn: Connection) -> bool:
        fresh = changed(conn, _ensure(conn, reg))
        if fresh is None:
            return False
        conn.execute(update(registry_configs).where(registry_configs.c.name == NAME).values(conditions=fresh))
        _stamp(conn, reg, MODIFIED)
        return True

    # Almost every heartbeat finds nothing to change: look first, take the write lock only then.
    def unchanged(conn: Connection) -> bool:
        row = _select_row(conn)
        return row is not None and changed(conn, row) is None

    if await reg.db.read(unchanged):
        return False
    return await reg.db.write(write)


def _condition_keys(items: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    return [(c.get("type"), c.get("status"), c.get("reason"), c.get("message")) for c in items]


def render(reg: Registry, conn: Connection, state: ConfigState) -> dict[str, Any]:
    """The full object as the API shows it."""
    now = utcnow()
    replicas = _replica_views(conn, reg, now)
    status = {
        "observedGeneration": _observed_generation(conn, reg, state, now),
        "readyReplicas": sum(1 for r in replicas if r.ready and not r.lost),
        "storageManaged": False,
        "storage": effective_storage(reg.config),
        "conditions": conditions(state.spec, replicas, state.conditions, now),
    }
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": singleton_metadata(
            NAME,
            state.uid,
            state.resource_version,
            state.generation,
            timestamp(state.created_at),
            state.labels,
            state.annotations,
            finalizers=["imageregistry.operator.openshift.io/finalizer"],
        ),
        "spec": copy.deepcopy(state.spec),
        "status": status,
    }


async def current_object(reg: Registry) -> dict[str, Any]:
    state = await get_state(reg)
    return await reg.db.read(lambda conn: render(reg, conn, state))


def public_host(reg: Registry) -> str:
    """HOST[:PORT] clients outside reach the registry at (status.publicDockerImageRepository)."""
    if reg.settings is None:
        return reg.config.http.public_host
    return reg.settings.current.public_host
