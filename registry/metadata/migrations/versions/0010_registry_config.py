"""registry_configs: the registry's own Config resource (spec, the spec in effect, status);
instances gain what a pod list shows (restarts, readiness, phase, the config generation it
applied, its last storage check) and the URL scheme it serves

Revision ID: 0010
Revises: 0009
"""

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "registry_configs",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("generation", sa.Integer(), nullable=False),
        sa.Column("spec", sa.JSON(), nullable=False),
        sa.Column("applied", sa.JSON(), nullable=False),
        sa.Column("applied_generation", sa.Integer(), nullable=False),
        sa.Column("conditions", sa.JSON(), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.Column("uid", sa.String(length=36), nullable=False),
        sa.Column("resource_version", sa.BigInteger(), server_default="1", nullable=False),
        sa.Column("labels", sa.JSON(), nullable=True),
        sa.Column("annotations", sa.JSON(), nullable=True),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_registry_configs")),
    )
    with op.batch_alter_table("instances") as batch:
        batch.add_column(sa.Column("scheme", sa.String(length=8), server_default="http", nullable=False))
        batch.add_column(sa.Column("restarts", sa.Integer(), server_default="0", nullable=False))
        batch.add_column(sa.Column("ready", sa.Boolean(), server_default=sa.false(), nullable=False))
        batch.add_column(sa.Column("phase", sa.String(length=16), server_default="Running", nullable=False))
        batch.add_column(sa.Column("not_ready_reason", sa.String(length=500), nullable=True))
        batch.add_column(sa.Column("storage_error", sa.String(length=500), nullable=True))
        batch.add_column(sa.Column("config_generation", sa.Integer(), server_default="0", nullable=False))
        batch.add_column(sa.Column("uid", sa.String(length=36), nullable=True))
        batch.add_column(sa.Column("stopped_at", TS, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("instances") as batch:
        for column in (
            "stopped_at",
            "uid",
            "config_generation",
            "storage_error",
            "not_ready_reason",
            "phase",
            "ready",
            "restarts",
            "scheme",
        ):
            batch.drop_column(column)
    op.drop_table("registry_configs")
