"""image pruning: online GC columns, the ImagePruner resource and its runs

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("blobs") as batch:
        batch.add_column(sa.Column("pending_since", TS, nullable=True))
        batch.add_column(sa.Column("deleting_since", TS, nullable=True))
    with op.batch_alter_table("repository_blobs") as batch:
        batch.add_column(sa.Column("pending_since", TS, nullable=True))
    with op.batch_alter_table("manifests") as batch:
        batch.add_column(sa.Column("last_pushed_at", TS, nullable=True))
    op.execute("UPDATE manifests SET last_pushed_at = created_at")

    op.create_table(
        "image_pruners",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("generation", sa.Integer(), nullable=False),
        sa.Column("spec", sa.JSON(), nullable=False),
        sa.Column("status", sa.JSON(), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_image_pruners")),
    )
    op.create_table(
        "prune_runs",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("trigger", sa.String(length=16), nullable=False),
        sa.Column("dry_run", sa.Boolean(), nullable=False),
        sa.Column("started_at", TS, nullable=False),
        sa.Column("finished_at", TS, nullable=True),
        sa.Column("outcome", sa.String(length=16), nullable=False),
        sa.Column("message", sa.Text(), nullable=True),
        sa.Column("counts", sa.JSON(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_prune_runs")),
    )
    op.create_index("ix_prune_runs_started", "prune_runs", ["started_at"])


def downgrade() -> None:
    op.drop_index("ix_prune_runs_started", table_name="prune_runs")
    op.drop_table("prune_runs")
    op.drop_table("image_pruners")
    with op.batch_alter_table("manifests") as batch:
        batch.drop_column("last_pushed_at")
    with op.batch_alter_table("repository_blobs") as batch:
        batch.drop_column("pending_since")
    with op.batch_alter_table("blobs") as batch:
        batch.drop_column("deleting_since")
        batch.drop_column("pending_since")
