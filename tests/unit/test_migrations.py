"""The migrations and the schema module must describe the same database."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine

from registry.metadata.migrate import SCHEMA_HEAD, alembic_config, run_upgrade
from registry.metadata.schema import metadata


def test_schema_head_constant_is_the_newest_revision():
    assert ScriptDirectory.from_config(alembic_config()).get_current_head() == SCHEMA_HEAD


def test_migrations_build_exactly_the_declared_schema(tmp_path):
    engine = create_engine(f"sqlite:///{tmp_path / 'm.db'}")
    with engine.begin() as conn:
        assert run_upgrade(conn, is_sqlite=True) is True
    with engine.begin() as conn:
        assert run_upgrade(conn, is_sqlite=True) is False  # already current: nothing to do
        diff = compare_metadata(MigrationContext.configure(conn), metadata)
    assert diff == []
