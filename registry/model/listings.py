"""Tag lists, the catalog and referrers: paginated, in lexical (byte) order."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, select

from registry.errors import NameUnknown
from registry.metadata.schema import manifests, repositories, tags
from registry.model.context import Registry
from registry.model.manifest_format import OCI_INDEX


@dataclass(frozen=True)
class Page:
    items: list[str]
    more: bool  # another page follows the last item


def _ordered(reg: Registry, column: Any) -> Any:
    # PostgreSQL sorts by locale unless told otherwise; the spec wants plain byte order.
    return column if reg.db.is_sqlite else column.collate("C")


async def list_tags(reg: Registry, repo: str, limit: int | None, last: str | None) -> Page:
    if limit == 0:
        return Page([], False)
    name_col = _ordered(reg, tags.c.name)

    def fetch(conn: Connection) -> list[str] | None:
        repo_id = conn.execute(select(repositories.c.id).where(repositories.c.name == repo)).scalar()
        if repo_id is None:
            return None
        query = select(tags.c.name).where(tags.c.repository_id == repo_id).order_by(name_col)
        if last:
            query = query.where(name_col > last)
        if limit is not None:
            query = query.limit(limit + 1)
        return list(conn.execute(query).scalars())

    names = await reg.db.read(fetch)
    if names is None:
        raise NameUnknown(detail={"name": repo})
    if limit is not None and len(names) > limit:
        return Page(names[:limit], True)
    return Page(names, False)


async def list_repositories(reg: Registry, limit: int | None, last: str | None) -> Page:
    if limit == 0:
        return Page([], False)
    name_col = _ordered(reg, repositories.c.name)
    query = select(repositories.c.name).order_by(name_col)
    if last:
        query = query.where(name_col > last)
    if limit is not None:
        query = query.limit(limit + 1)
    names = await reg.db.read(lambda conn: list(conn.execute(query).scalars()))
    if limit is not None and len(names) > limit:
        return Page(names[:limit], True)
    return Page(names, False)


async def list_referrers(reg: Registry, repo: str, subject: str, artifact_type: str | None) -> dict[str, Any]:
    """The OCI index of manifests in `repo` whose subject is `subject`."""
    query = (
        select(
            manifests.c.digest,
            manifests.c.media_type,
            manifests.c.size,
            manifests.c.artifact_type,
            manifests.c.annotations,
        )
        .select_from(manifests.join(repositories, repositories.c.id == manifests.c.repository_id))
        .where(repositories.c.name == repo, manifests.c.subject_digest == subject)
        .order_by(manifests.c.created_at, manifests.c.id)
    )
    if artifact_type is not None:
        query = query.where(manifests.c.artifact_type == artifact_type)
    rows = await reg.db.read(lambda conn: conn.execute(query).all())
    descriptors = []
    for row in rows:
        descriptor: dict[str, Any] = {"mediaType": row.media_type, "digest": row.digest, "size": row.size}
        if row.artifact_type:
            descriptor["artifactType"] = row.artifact_type
        if row.annotations:
            descriptor["annotations"] = row.annotations
        descriptors.append(descriptor)
    return {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": descriptors}
