"""NotificationEndpoint objects: webhook endpoints added through the API (table
notification_endpoints), listed with those of the config file (read-only here), each with its
delivery state (notification_cursors).

A spec is stored in the config file's keys (max_backoff, ignore.mediatypes, ...), so the
deliverer reads API endpoints exactly as it reads the config's (registry/notifications/
endpoints.py). The HMAC secret is sealed at rest (registry/imports/sealing.py) and never
returned: not in the spec, not in kubectl's copy of the applied object, not in the change log.
Every write goes through the change log like any other API object, so watches see it."""

from __future__ import annotations

import base64
import json
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from dataclasses import replace as replace_fields
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, delete, select, update

from registry.config import EndpointConfig, parse_endpoints
from registry.errors import ResourceAlreadyExists, ResourceConflict, ResourceInvalid, ResourceNotFound
from registry.kube import notifications_v1
from registry.kube.meta import new_uid
from registry.metadata.db import as_utc, utcnow
from registry.metadata.schema import notification_cursors, notification_endpoints
from registry.model import changes, events
from registry.model.changes import ADDED, DELETED, MODIFIED, Change, LoggedChange
from registry.model.context import Registry
from registry.units import format_go_duration

RESOURCE = "notificationendpoints"
GROUP = notifications_v1.GROUP
API, CONFIG = "api", "config"  # where an endpoint is defined
SEALED = "sealed"  # a stored secret: {"sealed": base64 of the sealed bytes}
LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"
# parse_endpoints' messages: "[0].max_backoff: ..." naming the item's key, or "[0]: ..." naming none.
_PROBLEM_RE = re.compile(r"^\[0\](?:\.(?P<key>[a-z_]+(?:\.[a-z_]+)?))?: (?P<message>.*)$", re.DOTALL)


@dataclass(frozen=True)
class DeliveryState:
    """An endpoint's row of notification_cursors, with what is still to send."""

    cursor: int
    pending: int
    delivered: int
    dropped: int
    failures: int
    last_success: datetime | None
    last_error: str | None
    last_error_at: datetime | None


@dataclass(frozen=True)
class Endpoint:
    name: str
    uid: str
    source: str  # API or CONFIG
    spec: Mapping[str, Any]  # the stored keys, without the secret
    signed: bool  # a secret signs the bodies
    generation: int
    resource_version: int  # 0: not stored (a config endpoint, or what a dry-run create would make)
    created: datetime | None  # None: a config endpoint (it exists while the config says so)
    labels: Mapping[str, str] = field(default_factory=dict)
    annotations: Mapping[str, str] = field(default_factory=dict)
    state: DeliveryState | None = None  # None until its first delivery attempt


@dataclass(frozen=True)
class EndpointEdit:
    """What a create or replace writes. `spec` is in the stored keys; its "secret" is plain
    text: absent keeps the current one (responses never show it, so a read-modify-write
    leaves it out), "" removes it."""

    spec: Mapping[str, Any]
    labels: Mapping[str, str] = field(default_factory=dict)
    annotations: Mapping[str, str] = field(default_factory=dict)


class DefinedInConfig(ResourceAlreadyExists):
    """409 AlreadyExists for a name the config file defines: the config's endpoint is the one
    delivered to, so the API cannot take its name."""

    def __init__(self, name: str):
        super().__init__(RESOURCE, GROUP, name)
        self.message = f"{self.message}: it is defined in the config file (notifications.endpoints)"
        self.args = (self.message,)


def invalid(name: str, field_path: str, message: str, reason: str = "FieldValueInvalid") -> ResourceInvalid:
    return ResourceInvalid(
        f'{notifications_v1.KIND}.{GROUP} "{name}" is invalid: {field_path}: {message}',
        kind=notifications_v1.KIND,
        group=GROUP,
        name=name or None,
        causes=[{"reason": reason, "message": message, "field": field_path}],
    )


def managed_in_config(name: str) -> ResourceInvalid:
    """Why an update, patch or delete of a config endpoint is refused: 422 Invalid, as the API
    server answers a write that the object's state forbids (an immutable Secret or ConfigMap:
    FieldValueForbidden). Not 405: discovery says this resource serves the verb, and 405 tells
    clients that it never does. Not 403: no role could allow it, the config file rules."""
    return invalid(
        name,
        f"metadata.annotations[{notifications_v1.SOURCE_ANNOTATION}]",
        "Forbidden: the endpoint is managed in the config file (notifications.endpoints): change it there",
        reason="FieldValueForbidden",
    )


# -- specs ---------------------------------------------------------------------------------------


def endpoint_config(name: str, spec: Mapping[str, Any]) -> EndpointConfig:
    """The endpoint a stored spec (its secret opened) defines, parsed as the config file's
    notifications.endpoints are; ValueError naming the field when it is wrong. This is
    registry/notifications/endpoints.py `from_spec` (the model cannot import that package:
    it sits above the model), so what is accepted here is what is delivered to."""
    return parse_endpoints([{**spec, "name": name}])[0]


def check_spec(name: str, spec: Mapping[str, Any]) -> None:
    """422 Invalid naming the spec field (as the object spells it) when the endpoint would not parse."""
    if spec.get("url") is None:
        raise invalid(name, "spec.url", "Required value", reason="FieldValueRequired")
    try:
        endpoint_config(name, spec)
    except ValueError as e:
        key, message = _culprit(name, spec, str(e))
        path = "metadata.name" if key == "name" else notifications_v1.spec_field(key) if key else "spec"
        raise invalid(name, path, _as_written(message)) from None


def _as_written(message: str) -> str:
    """The parser's message with the config file's key names as the object spells them."""
    for written, stored in notifications_v1.SPEC_KEYS.items():
        if written != stored:
            message = re.sub(rf"\b{stored}\b", written, message)
    return message


def _culprit(name: str, spec: Mapping[str, Any], error: str) -> tuple[str, str]:
    """(stored key, message) of a parse error. The parser names the field in most messages;
    those about values it reads together (durations, batch limits) name none, so each field
    is tried on its own until one fails; the last resort names the limit on the others."""
    m = _PROBLEM_RE.match(error)
    if m is None:  # not a problem of one item's field: the spec as a whole
        return "", error
    message = m.group("message")
    if m.group("key"):
        return m.group("key"), message
    for key in spec:
        try:
            endpoint_config(name, {"url": spec.get("url"), key: spec[key]})
        except ValueError:
            return key, message
    return ("max_backoff" if "max_backoff" in spec else "backoff"), message


def _box_context(name: str) -> str:
    # ':' is in no namespace name: a Secret's sealed data (sealed for "NS/NAME") never opens here.
    return f"notificationendpoint:{name}"


def _seal(reg: Registry, name: str, secret: str) -> dict[str, str]:
    sealed = reg.secret_keys.box().seal(secret.encode(), _box_context(name))
    return {SEALED: base64.b64encode(sealed).decode()}


def _open(reg: Registry, name: str, stored: Any) -> str:
    if not isinstance(stored, dict) or not isinstance(stored.get(SEALED), str):
        raise ValueError("the stored secret is not sealed")
    return reg.secret_keys.box().open(base64.b64decode(stored[SEALED]), _box_context(name)).decode()


def opened_spec(reg: Registry, name: str, spec: Mapping[str, Any]) -> dict[str, Any]:
    """A stored spec with its secret opened, as the deliverer needs it (ValueError, SealError
    included, when it does not open: another secrets key, or the row was altered)."""
    out = dict(spec)
    if "secret" in out:
        out["secret"] = _open(reg, name, out["secret"])
    return out


def _next_secret(reg: Registry, name: str, given: Any, stored: Any) -> tuple[Any, bool]:
    """(the secret to store, None for none; whether the key changed). An unchanged key keeps
    its sealed value, so re-applying the same object bumps no generation."""
    if given is None:
        return stored, False
    if given == "":
        return None, stored is not None
    try:
        same = stored is not None and _open(reg, name, stored) == given
    except ValueError:  # sealed with another key: the new one replaces it
        same = False
    return (stored, False) if same else (_seal(reg, name, str(given)), True)


def _scrubbed(annotations: Mapping[str, str]) -> dict[str, str]:
    """The annotations with spec.secret taken out of kubectl's last-applied copy of the object
    (`kubectl apply` keeps the whole manifest there, and annotations are returned)."""
    out = dict(annotations)
    out.pop(notifications_v1.SOURCE_ANNOTATION, None)  # the server's to say, never stored
    text = out.get(LAST_APPLIED)
    try:
        applied = json.loads(text) if text else None
    except ValueError:
        return out
    spec = applied.get("spec") if isinstance(applied, dict) else None
    if isinstance(spec, dict) and "secret" in spec:
        del spec["secret"]
        out[LAST_APPLIED] = json.dumps(applied, separators=(",", ":")) + "\n"
    return out


# -- reading -------------------------------------------------------------------------------------


def _config_spec(e: EndpointConfig) -> dict[str, Any]:
    """A config endpoint as a stored spec (its effective values; the secret left out)."""
    spec: dict[str, Any] = {"url": e.url}
    if e.headers:
        spec["headers"] = {k: [v for k2, v in e.headers if k2 == k] for k in dict(e.headers)}
    spec.update(
        timeout=format_go_duration(round(e.timeout * 1e9)),
        backoff=format_go_duration(round(e.backoff * 1e9)),
        max_backoff=format_go_duration(round(e.max_backoff * 1e9)),
    )
    if e.ignore_media_types or e.ignore_actions:
        spec["ignore"] = {"mediatypes": list(e.ignore_media_types), "actions": list(e.ignore_actions)}
    spec.update(pulls=e.pulls, format=e.format, max_batch_events=e.max_batch_events)
    spec.update(max_batch_bytes=e.max_batch_bytes, disabled=e.disabled)
    return spec


def _from_config(e: EndpointConfig, state: DeliveryState | None) -> Endpoint:
    # Derived from the name: the same uid on every read and every replica.
    uid = str(uuid.uuid5(uuid.NAMESPACE_URL, f"{GROUP}/config/{e.name}"))
    annotations = {notifications_v1.SOURCE_ANNOTATION: CONFIG}
    return Endpoint(e.name, uid, CONFIG, _config_spec(e), bool(e.secret), 1, 0, None, {}, annotations, state)


def _from_row(row: Any, state: DeliveryState | None) -> Endpoint:
    spec = {k: v for k, v in (row.spec or {}).items() if k != "secret"}
    return Endpoint(
        row.name,
        row.uid,
        API,
        spec,
        "secret" in (row.spec or {}),
        row.generation,
        row.resource_version,
        as_utc(row.created_at),
        dict(row.labels or {}),
        dict(row.annotations or {}),
        state,
    )


def delivery_states(conn: Connection, names: list[str]) -> dict[str, DeliveryState]:
    """Each named endpoint's delivery state (its row of notification_cursors), by name."""
    if not names:
        return {}
    newest = events.newest(conn)
    rows = conn.execute(select(notification_cursors).where(notification_cursors.c.endpoint.in_(names))).all()
    return {
        r.endpoint: DeliveryState(
            r.cursor,
            max(newest - r.cursor, 0),
            r.delivered,
            r.dropped,
            r.failures,
            as_utc(r.last_success_at) if r.last_success_at else None,
            r.last_error,
            as_utc(r.last_error_at) if r.last_error_at else None,
        )
        for r in rows
    }


def _read(reg: Registry, conn: Connection, names: list[str] | None) -> list[Endpoint]:
    """The endpoints named (all with None), config ones first in name order; a stored one
    whose name the config file took since is shadowed by it, as in delivery."""
    config = [e for e in reg.config.notifications.endpoints if names is None or e.name in names]
    taken = {e.name for e in reg.config.notifications.endpoints}
    query = select(notification_endpoints).order_by(notification_endpoints.c.name)
    if names is not None:
        query = query.where(notification_endpoints.c.name.in_(names))
    rows = [r for r in conn.execute(query).all() if r.name not in taken]
    states = delivery_states(conn, [e.name for e in config] + [r.name for r in rows])
    found = [_from_config(e, states.get(e.name)) for e in config] + [_from_row(r, states.get(r.name)) for r in rows]
    return sorted(found, key=lambda e: e.name)


async def list_endpoints(reg: Registry) -> tuple[list[Endpoint], int]:
    """Every endpoint, by name, and the resourceVersion of the list."""
    return await reg.db.read(lambda conn: (_read(reg, conn, None), changes.latest(conn)))


async def get_endpoint(reg: Registry, name: str) -> Endpoint:
    found = await reg.db.read(lambda conn: _read(reg, conn, [name]))
    if not found:
        raise ResourceNotFound(RESOURCE, GROUP, name)
    return found[0]


def _snapshot(e: Endpoint) -> dict[str, Any]:
    """A deleted endpoint's last state, kept in its DELETED change (no secret in it)."""
    return {
        "name": e.name,
        "uid": e.uid,
        "resourceVersion": e.resource_version,
        "created": e.created.isoformat() if e.created else None,
        "generation": e.generation,
        "labels": dict(e.labels),
        "annotations": dict(e.annotations),
        "spec": dict(e.spec),
        "signed": e.signed,
    }


def _from_snapshot(s: Mapping[str, Any]) -> Endpoint:
    created = datetime.fromisoformat(s["created"]) if s.get("created") else None
    return Endpoint(
        s["name"],
        s["uid"],
        API,
        s.get("spec") or {},
        bool(s.get("signed")),
        s.get("generation") or 1,
        s["resourceVersion"],
        created,
        s.get("labels") or {},
        s.get("annotations") or {},
    )


async def changed(reg: Registry, logged: list[LoggedChange]) -> list[tuple[LoggedChange, Endpoint]]:
    """What a watch shows for logged changes: the endpoint as it is now, or, deleted since,
    as it was when deleted."""

    def run(conn: Connection) -> list[tuple[LoggedChange, Endpoint]]:
        names = sorted({c.change.name for c in logged if c.change.type != DELETED})
        current = {e.name: e for e in _read(reg, conn, names)} if names else {}
        out = []
        for c in logged:
            now = current.get(c.change.name) if c.change.type != DELETED else None
            snapshot = c.change.object if c.change.type == DELETED else None
            if now is None and snapshot is None:
                snapshot = changes.deleted_after(conn, RESOURCE, None, c.change.name, c.id)
            if now is not None or snapshot:
                out.append((c, now if now is not None else _from_snapshot(snapshot or {})))
        return out

    return await reg.db.read(run)


# -- writing -------------------------------------------------------------------------------------


def _conflict(name: str, why: str) -> ResourceConflict:
    return ResourceConflict(
        f'Operation cannot be fulfilled on {RESOURCE}.{GROUP} "{name}": {why}', kind=RESOURCE, group=GROUP, name=name
    )


def _in_config(reg: Registry, name: str) -> bool:
    return any(e.name == name for e in reg.config.notifications.endpoints)


async def create_endpoint(reg: Registry, name: str, edit: EndpointEdit, dry_run: bool = False) -> Endpoint:
    """Store a new endpoint: AlreadyExists when one has the name (the config file's too). A dry
    run checks all of that and stores nothing."""
    if _in_config(reg, name):
        raise DefinedInConfig(name)
    return await _write(reg, name, edit, None, dry_run)


async def replace_endpoint(
    reg: Registry, name: str, edit: EndpointEdit, expected_version: int | None = None, dry_run: bool = False
) -> Endpoint:
    """Overwrite a stored endpoint: NotFound when there is none; Conflict when it is no longer
    at `expected_version`; Invalid for the config file's."""
    if _in_config(reg, name):
        raise managed_in_config(name)
    return await _write(reg, name, edit, expected_version, dry_run, replace=True)


async def _write(
    reg: Registry, name: str, edit: EndpointEdit, expected: int | None, dry_run: bool, replace: bool = False
) -> Endpoint:
    check_spec(name, edit.spec)
    key = notification_endpoints.c.name == name

    def run(conn: Connection) -> Endpoint:
        row = conn.execute(select(notification_endpoints).where(key)).first()
        if row is not None and not replace:
            raise ResourceAlreadyExists(RESOURCE, GROUP, name)
        if row is None and replace:
            raise ResourceNotFound(RESOURCE, GROUP, name)
        if row is not None and expected is not None and row.resource_version != expected:
            raise _conflict(name, "the object has been modified; please apply your changes to the latest version")
        old = dict(row.spec or {}) if row is not None else {}
        secret, new_key = _next_secret(reg, name, edit.spec.get("secret"), old.get("secret"))
        spec = {k: v for k, v in edit.spec.items() if k != "secret"}
        spec_changed = new_key or spec != {k: v for k, v in old.items() if k != "secret"}
        if secret is not None:
            spec["secret"] = secret
        values = {"spec": spec, "labels": dict(edit.labels) or None, "annotations": _scrubbed(edit.annotations) or None}
        if row is None:
            new = {"name": name, "uid": new_uid(), "generation": 1, "created_at": utcnow(), "resource_version": 0}
            conn.execute(notification_endpoints.insert().values(**new, **values))
            # A new endpoint starts afresh at the end of the log, whatever an earlier one of
            # that name (deleted, or once in the config file) had reached.
            conn.execute(delete(notification_cursors).where(notification_cursors.c.endpoint == name))
        else:
            values["generation"] = row.generation + (1 if spec_changed else 0)
            conn.execute(update(notification_endpoints).where(key).values(**values))
        (version,) = changes.record(reg.db, conn, [Change(RESOURCE, None, name, MODIFIED if row else ADDED)])
        conn.execute(update(notification_endpoints).where(key).values(resource_version=version))
        made = _read(reg, conn, [name])[0]
        if dry_run:  # nothing stored: the version it has (none for a new one)
            return replace_fields(made, resource_version=row.resource_version if row is not None else 0)
        return made

    return await reg.db.write(run, rehearse=dry_run)


async def delete_endpoint(
    reg: Registry,
    name: str,
    expected_version: int | None = None,
    expected_uid: str | None = None,
    dry_run: bool = False,
) -> Endpoint:
    """Delete a stored endpoint and its delivery state (NotFound, Conflict on a failed
    precondition, Invalid for the config file's)."""
    if _in_config(reg, name):
        raise managed_in_config(name)
    key = notification_endpoints.c.name == name

    def run(conn: Connection) -> Endpoint:
        found = _read(reg, conn, [name])
        if not found:
            raise ResourceNotFound(RESOURCE, GROUP, name)
        gone = found[0]
        if (expected_version is not None and gone.resource_version != expected_version) or (
            expected_uid is not None and gone.uid != expected_uid
        ):
            raise _conflict(name, "precondition failed")
        conn.execute(delete(notification_endpoints).where(key))
        conn.execute(delete(notification_cursors).where(notification_cursors.c.endpoint == name))
        changes.record(reg.db, conn, [Change(RESOURCE, None, name, DELETED, _snapshot(gone))])
        return gone

    return await reg.db.write(run, rehearse=dry_run)
