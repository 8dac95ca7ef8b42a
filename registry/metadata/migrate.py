"""Schema migrations with Alembic, run in-process on the server's own connection."""

from __future__ import annotations

import os

from sqlalchemy import Connection, inspect, text

MIGRATIONS = os.path.join(os.path.dirname(__file__), "migrations")
# The newest revision in migrations/versions (a unit test keeps the two in step). Knowing
# it lets a worker see that the schema is current without importing Alembic (~10 MB).
SCHEMA_HEAD = "0010"
_PG_MIGRATION_LOCK = 7_146_531_001  # advisory lock key: replicas migrate one at a time


def alembic_config():  # type: ignore[no-untyped-def]
    from alembic.config import Config as AlembicConfig

    cfg = AlembicConfig()
    cfg.set_main_option("script_location", MIGRATIONS)
    return cfg


def current_revision(conn: Connection) -> str | None:
    if not inspect(conn).has_table("alembic_version"):
        return None
    return conn.execute(text("SELECT version_num FROM alembic_version")).scalar()


def run_upgrade(conn: Connection, is_sqlite: bool) -> bool:
    """Bring the schema to SCHEMA_HEAD. Returns True when something was migrated."""
    if not is_sqlite:
        conn.execute(text(f"SELECT pg_advisory_xact_lock({_PG_MIGRATION_LOCK})"))
    if current_revision(conn) == SCHEMA_HEAD:
        return False
    from alembic import command

    cfg = alembic_config()
    cfg.attributes["connection"] = conn
    command.upgrade(cfg, "head")
    return True
