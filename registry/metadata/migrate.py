"""Schema migrations with Alembic, run in-process on the server's own connection."""

from __future__ import annotations

import os

from alembic import command
from alembic.config import Config as AlembicConfig
from sqlalchemy import Connection, text

MIGRATIONS = os.path.join(os.path.dirname(__file__), "migrations")
_PG_MIGRATION_LOCK = 7_146_531_001  # advisory lock key: replicas migrate one at a time


def alembic_config() -> AlembicConfig:
    cfg = AlembicConfig()
    cfg.set_main_option("script_location", MIGRATIONS)
    return cfg


def run_upgrade(conn: Connection, is_sqlite: bool) -> None:
    if not is_sqlite:
        conn.execute(text(f"SELECT pg_advisory_xact_lock({_PG_MIGRATION_LOCK})"))
    cfg = alembic_config()
    cfg.attributes["connection"] = conn
    command.upgrade(cfg, "head")
