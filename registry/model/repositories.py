from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from registry.metadata.db import utcnow
from registry.metadata.schema import repositories
from registry.model.context import Registry


async def repository_id(reg: Registry, name: str) -> int | None:
    """The id of an existing repository. Cached: ids never change while a repository exists."""
    key = ("repo", name)
    cached = reg.cache.get(key)
    if cached is not None:
        return cached
    gen = reg.cache.generation.current()
    async with reg.db.read() as conn:
        repo_id = (await conn.execute(select(repositories.c.id).where(repositories.c.name == name))).scalar()
    if repo_id is not None:
        reg.cache.put(key, repo_id, gen)
    return repo_id


async def ensure_repository(reg: Registry, conn: AsyncConnection, name: str) -> int:
    """Create the repository if needed, inside the caller's write transaction."""
    cached = reg.cache.get(("repo", name))
    if cached is not None:
        return cached
    await conn.execute(reg.db.insert_ignore(repositories, ["name"]).values(name=name, created_at=utcnow()))
    return (await conn.execute(select(repositories.c.id).where(repositories.c.name == name))).scalar_one()
