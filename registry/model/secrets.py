"""Pull secrets: Kubernetes Secrets of the docker config types in a namespace, their data
sealed at rest (registry/imports/sealing.py) and opened only for callers that ask for it
(imports reading credentials, an admin reading the Secret). Every write goes through the
change log like any other API object."""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass, field
from dataclasses import replace as replace_fields
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, delete, select, update

from registry.errors import ResourceAlreadyExists, ResourceConflict, ResourceInvalid, ResourceNotFound
from registry.imports.keyring import DOCKERCFG, DOCKERCONFIGJSON, DockerConfigError, parse_docker_config
from registry.kube.meta import new_uid
from registry.metadata.db import as_utc, utcnow
from registry.metadata.schema import secrets
from registry.model import changes
from registry.model.changes import ADDED, DELETED, MODIFIED, Change
from registry.model.context import Registry
from registry.names import NAME_COMPONENT_RE

SECRETS = "secrets"
# The data key each type keeps its document under, as Kubernetes has it.
DATA_KEYS = {DOCKERCONFIGJSON: ".dockerconfigjson", DOCKERCFG: ".dockercfg"}
MAX_DATA_BYTES = 1 << 20  # Kubernetes' limit for a Secret


@dataclass(frozen=True)
class Secret:
    namespace: str
    name: str
    uid: str
    type: str
    created: datetime
    resource_version: int
    labels: dict[str, str] = field(default_factory=dict)
    annotations: dict[str, str] = field(default_factory=dict)
    data: dict[str, bytes] | None = field(default=None, repr=False)  # only when opened


def invalid(name: str, field_path: str, message: str) -> ResourceInvalid:
    """A Secret that fails validation, one cause naming the field (as the API server has it)."""
    return ResourceInvalid(
        f'Secret "{name}" is invalid: {field_path}: {message}',
        kind="Secret",
        group="",
        name=name or None,
        causes=[{"reason": "FieldValueInvalid", "message": message, "field": field_path}],
    )


def valid_name(name: str) -> bool:
    return len(name) <= 253 and NAME_COMPONENT_RE.fullmatch(name) is not None


def check_data(name: str, type_: str, data: dict[str, bytes]) -> None:
    """A Secret of a docker config type holds exactly its document, and the document parses
    (a bad pull secret is refused when written, not when an import needs it)."""
    key = DATA_KEYS.get(type_)
    if key is None:
        raise invalid(name, "type", f"must be {DOCKERCONFIGJSON} or {DOCKERCFG}: the registry keeps pull secrets only")
    if set(data) != {key}:
        raise invalid(name, "data", f"a {type_} Secret holds exactly the key {key!r}")
    if len(data[key]) > MAX_DATA_BYTES:
        raise invalid(name, f"data[{key}]", f"may hold at most {MAX_DATA_BYTES} bytes")
    try:
        parse_docker_config(data[key], type_)
    except DockerConfigError as e:
        raise invalid(name, f"data[{key}]", str(e)) from None


def _sealed(reg: Registry, namespace: str, name: str, data: dict[str, bytes]) -> bytes:
    document = json.dumps({k: base64.b64encode(v).decode() for k, v in data.items()}).encode()
    return reg.secret_keys.box().seal(document, f"{namespace}/{name}")


def _opened(reg: Registry, namespace: str, name: str, sealed: bytes) -> dict[str, bytes]:
    document = json.loads(reg.secret_keys.box().open(sealed, f"{namespace}/{name}"))
    return {k: base64.b64decode(v) for k, v in document.items()}


def _from_row(reg: Registry, row: Any, reveal: bool) -> Secret:
    return Secret(
        row.namespace,
        row.name,
        row.uid,
        row.type,
        as_utc(row.created_at),
        row.resource_version,
        dict(row.labels or {}),
        dict(row.annotations or {}),
        _opened(reg, row.namespace, row.name, row.data) if reveal else None,
    )


async def create_secret(
    reg: Registry,
    namespace: str,
    name: str,
    type_: str,
    data: dict[str, bytes],
    labels: dict[str, str] | None = None,
    annotations: dict[str, str] | None = None,
    replace: bool = False,
    create: bool = True,
    expected_version: int | None = None,
    dry_run: bool = False,
) -> Secret:
    """Create the secret (AlreadyExists when there is one) or, with `replace`, overwrite one
    of that name (NotFound without `create` when there is none; Conflict when it is no
    longer at `expected_version`). A dry run checks all of that and stores nothing."""
    if not valid_name(namespace) or not valid_name(name):
        raise invalid(name[:253], "metadata.name", "must be a lowercase name: letters, digits, '.', '_', '-'")
    check_data(name, type_, data)
    sealed = _sealed(reg, namespace, name, data)

    def run(conn: Connection) -> Secret:
        key = (secrets.c.namespace == namespace) & (secrets.c.name == name)
        existing = conn.execute(select(secrets.c.id, secrets.c.resource_version).where(key)).first()
        if existing is not None and not replace:
            raise ResourceAlreadyExists(SECRETS, "", name)
        if existing is None and not create:
            raise ResourceNotFound(SECRETS, "", name)
        if existing is not None and expected_version is not None and existing.resource_version != expected_version:
            raise ResourceConflict(
                f'Operation cannot be fulfilled on secrets "{name}": the object has been modified; '
                "please apply your changes to the latest version and try again",
                kind=SECRETS,
                group="",
                name=name,
            )
        values = {"type": type_, "data": sealed, "labels": labels or None, "annotations": annotations or None}
        if existing is None:
            now = utcnow()
            conn.execute(
                secrets.insert().values(
                    namespace=namespace, name=name, uid=new_uid(), created_at=now, resource_version=0, **values
                )
            )
        else:
            conn.execute(update(secrets).where(key).values(**values))
        (version,) = changes.record(
            reg.db, conn, [Change(SECRETS, namespace, name, ADDED if existing is None else MODIFIED)]
        )
        conn.execute(update(secrets).where(key).values(resource_version=version))
        made = _from_row(reg, conn.execute(select(secrets).where(key)).one(), reveal=True)
        if dry_run:  # nothing stored: the version it has (none for a new one)
            return replace_fields(made, resource_version=existing.resource_version if existing is not None else 0)
        return made

    return await reg.db.write(run, rehearse=dry_run)


async def get_secret(reg: Registry, namespace: str, name: str, reveal: bool = False) -> Secret:
    row = await reg.db.read(
        lambda conn: conn.execute(
            select(secrets).where(secrets.c.namespace == namespace, secrets.c.name == name)
        ).first()
    )
    if row is None:
        raise ResourceNotFound(SECRETS, "", name)
    return _from_row(reg, row, reveal)


async def list_secrets(reg: Registry, namespace: str | None = None, reveal: bool = False) -> list[Secret]:
    query = select(secrets).order_by(secrets.c.namespace, secrets.c.name)
    if namespace is not None:
        query = query.where(secrets.c.namespace == namespace)
    rows = await reg.db.read(lambda conn: conn.execute(query).all())
    return [_from_row(reg, row, reveal) for row in rows]


async def delete_secret(
    reg: Registry,
    namespace: str,
    name: str,
    expected_version: int | None = None,
    expected_uid: str | None = None,
    dry_run: bool = False,
) -> Secret:
    def run(conn: Connection) -> Secret:
        key = (secrets.c.namespace == namespace) & (secrets.c.name == name)
        row = conn.execute(select(secrets).where(key)).first()
        if row is None:
            raise ResourceNotFound(SECRETS, "", name)
        if (expected_version is not None and row.resource_version != expected_version) or (
            expected_uid is not None and row.uid != expected_uid
        ):
            raise ResourceConflict(
                f'Operation cannot be fulfilled on secrets "{name}": precondition failed',
                kind=SECRETS,
                group="",
                name=name,
            )
        conn.execute(delete(secrets).where(key))
        gone = {"metadata": {"name": name, "namespace": namespace, "uid": row.uid}}
        changes.record(reg.db, conn, [Change(SECRETS, namespace, name, DELETED, gone)])
        return _from_row(reg, row, reveal=False)

    return await reg.db.write(run, rehearse=dry_run)
