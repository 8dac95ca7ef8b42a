from __future__ import annotations

from sqlalchemy import Connection, bindparam, select

from registry.metadata.schema import repositories
from registry.model.context import Registry

# Statements are built once with bind parameters: building one costs ~5x running it.
SELECT_ID = select(repositories.c.id).where(repositories.c.name == bindparam("name"))


def _repository_id(conn: Connection, name: str) -> int | None:
    return conn.execute(SELECT_ID, {"name": name}).scalar()


async def repository_id(reg: Registry, name: str) -> int | None:
    """The id of an existing repository. Cached: ids never change while a repository exists."""
    cached = reg.cache.get(name, "id")
    if cached is not None:
        return cached
    stamp = reg.cache.stamp(name)
    repo_id = await reg.db.read(_repository_id, name)
    if repo_id is not None:
        reg.cache.put(name, "id", repo_id, stamp)
    return repo_id


def repository_id_in(conn: Connection, name: str) -> int | None:
    """The repository's id inside the caller's transaction."""
    return _repository_id(conn, name)
