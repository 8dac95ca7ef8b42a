"""Schema migrations with Alembic, run in-process on the server's own connection."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from alembic import command
from alembic.config import Config as AlembicConfig
from sqlalchemy import text

if TYPE_CHECKING:
    from registry.metadata.db import Database

MIGRATIONS = os.path.join(os.path.dirname(__file__), "migrations")
_PG_MIGRATION_LOCK = 7_146_531_001  # advisory lock key: replicas migrate one at a time


def alembic_config() -> AlembicConfig:
    cfg = AlembicConfig()
    cfg.set_main_option("script_location", MIGRATIONS)
    return cfg


def _run_upgrade(sync_conn: Any) -> None:
    cfg = alembic_config()
    cfg.attributes["connection"] = sync_conn
    command.upgrade(cfg, "head")


async def upgrade(db: Database) -> None:
    async with db.engine.begin() as conn:
        if not db.is_sqlite:
            await conn.execute(text(f"SELECT pg_advisory_xact_lock({_PG_MIGRATION_LOCK})"))
        await conn.run_sync(_run_upgrade)
