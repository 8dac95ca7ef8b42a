"""Tag lists, the catalog and referrers: paginated, in lexical (byte) order."""

from __future__ import annotations

import bisect
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, func, select, tuple_

from registry.errors import NameUnknown
from registry.metadata.schema import manifests, repositories, tags
from registry.model.context import Registry
from registry.model.manifest_format import OCI_INDEX
from registry.model.repositories import repository_id


@dataclass(frozen=True)
class Page:
    items: list[str]
    more: bool  # another page follows the last item


def _ordered(reg: Registry, column: Any) -> Any:
    # PostgreSQL sorts by locale unless told otherwise; the spec wants plain byte order.
    return column if reg.db.is_sqlite else column.collate("C")


TAG_CACHE_LIMIT = 50_000  # repositories with more tags are paged from the database


def tag_order(tag: str) -> tuple[str, str]:
    """The spec's "lexical (case-insensitive alphanumeric) order"; ties in plain byte order."""
    return tag.lower(), tag


def _all_tags(conn: Connection, repo: str, name_col: Any) -> list[str] | None:
    repo_id = conn.execute(select(repositories.c.id).where(repositories.c.name == repo)).scalar()
    if repo_id is None:
        return None
    query = select(tags.c.name).where(tags.c.repository_id == repo_id).limit(TAG_CACHE_LIMIT + 1)
    return sorted(conn.execute(query).scalars(), key=tag_order)


def _tags_page(conn: Connection, repo: str, name_col: Any, limit: int | None, last: str | None) -> list[str]:
    order = (func.lower(name_col), name_col)
    query = (
        select(tags.c.name)
        .select_from(tags.join(repositories, repositories.c.id == tags.c.repository_id))
        .where(repositories.c.name == repo)
        .order_by(*order)
    )
    if last:
        query = query.where(tuple_(*order) > tuple_(*tag_order(last)))
    if limit is not None:
        query = query.limit(limit + 1)
    return list(conn.execute(query).scalars())


async def list_tags(reg: Registry, repo: str, limit: int | None, last: str | None) -> Page:
    """One page of a repository's tags. The whole sorted list is cached per repository
    (until its tags change), so following `Link` pages costs no database round trip."""
    if limit == 0:
        if await repository_id(reg, repo) is None:
            raise NameUnknown(detail={"name": repo})
        return Page([], False)
    name_col = _ordered(reg, tags.c.name)
    names = reg.cache.get(repo, "tags")
    if names is None:
        stamp = reg.cache.stamp(repo)
        names = await reg.db.read(_all_tags, repo, name_col)
        if names is None:
            raise NameUnknown(detail={"name": repo})
        if len(names) > TAG_CACHE_LIMIT:
            page = await reg.db.read(_tags_page, repo, name_col, limit, last)
            return Page(page[:limit], True) if limit is not None and len(page) > limit else Page(page, False)
        reg.cache.put(repo, "tags", names, stamp, size=64 + sum(len(n) + 56 for n in names))
    start = bisect.bisect_right(names, tag_order(last), key=tag_order) if last else 0
    end = len(names) if limit is None else min(start + limit, len(names))
    return Page(names[start:end], end < len(names))


async def list_repositories(
    reg: Registry, limit: int | None, last: str | None, visible: Callable[[str], Awaitable[bool]] | None = None
) -> Page:
    """A page of repository names; with `visible`, only those it accepts (the caller's view)."""
    if limit == 0:
        return Page([], False)
    name_col = _ordered(reg, repositories.c.name)
    batch = (limit or 1000) + 1
    found: list[str] = []
    while True:
        query = select(repositories.c.name).order_by(name_col).limit(batch)
        if last:
            query = query.where(name_col > last)
        names = await reg.db.read(lambda conn, q=query: list(conn.execute(q).scalars()))
        for name in names:
            if visible is None or await visible(name):
                found.append(name)
                if limit is not None and len(found) > limit:
                    return Page(found[:limit], True)
        if len(names) < batch:
            return Page(found, False)
        last = names[-1]


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
