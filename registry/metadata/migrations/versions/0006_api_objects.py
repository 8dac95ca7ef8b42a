"""API objects: object metadata of image streams, the change log behind resourceVersions and watches

Revision ID: 0006
Revises: 0005
"""

import uuid

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("repositories") as batch:
        batch.add_column(sa.Column("uid", sa.String(length=36), nullable=True))
        batch.add_column(sa.Column("resource_version", sa.BigInteger(), nullable=False, server_default="1"))
        batch.add_column(sa.Column("generation", sa.BigInteger(), nullable=False, server_default="1"))
        batch.add_column(sa.Column("labels", sa.JSON(), nullable=True))
        batch.add_column(sa.Column("annotations", sa.JSON(), nullable=True))
        batch.add_column(sa.Column("spec", sa.JSON(), nullable=True))
        batch.add_column(sa.Column("deleted_at", TS, nullable=True))
    conn = op.get_bind()
    for (repo_id,) in conn.execute(sa.text("SELECT id FROM repositories")).all():
        conn.execute(sa.text("UPDATE repositories SET uid = :uid WHERE id = :id"), {"uid": str(uuid.uuid4()), "id": repo_id})
    with op.batch_alter_table("repositories") as batch:
        batch.alter_column("uid", existing_type=sa.String(length=36), nullable=False)
    with op.batch_alter_table("tag_events") as batch:
        batch.add_column(sa.Column("generation", sa.BigInteger(), nullable=False, server_default="1"))
    with op.batch_alter_table("manifests") as batch:
        batch.add_column(sa.Column("resource_version", sa.BigInteger(), nullable=False, server_default="1"))
    with op.batch_alter_table("image_pruners") as batch:
        batch.add_column(sa.Column("uid", sa.String(length=36), nullable=True))
        batch.add_column(sa.Column("resource_version", sa.BigInteger(), nullable=False, server_default="1"))
        batch.add_column(sa.Column("labels", sa.JSON(), nullable=True))
        batch.add_column(sa.Column("annotations", sa.JSON(), nullable=True))
    for (name,) in conn.execute(sa.text("SELECT name FROM image_pruners")).all():
        conn.execute(sa.text("UPDATE image_pruners SET uid = :uid WHERE name = :n"), {"uid": str(uuid.uuid4()), "n": name})
    op.create_table(
        "changes",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("at", TS, nullable=False),
        sa.Column("resource", sa.String(length=64), nullable=False),
        sa.Column("namespace", sa.String(length=253), nullable=True),
        sa.Column("name", sa.String(length=512), nullable=False),
        sa.Column("type", sa.String(length=16), nullable=False),
        sa.Column("object", sa.JSON(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_changes")),
    )
    op.create_index("ix_changes_at", "changes", ["at"])
    op.create_table(
        "change_log",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("trimmed_through", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_change_log")),
    )
    # Objects that existed before the log have resourceVersion 1: the log starts above it.
    conn.execute(sa.text("INSERT INTO change_log (id, trimmed_through) VALUES (1, 1)"))


def downgrade() -> None:
    op.drop_table("change_log")
    op.drop_index("ix_changes_at", table_name="changes")
    op.drop_table("changes")
    with op.batch_alter_table("image_pruners") as batch:
        batch.drop_column("annotations")
        batch.drop_column("labels")
        batch.drop_column("resource_version")
        batch.drop_column("uid")
    with op.batch_alter_table("manifests") as batch:
        batch.drop_column("resource_version")
    with op.batch_alter_table("tag_events") as batch:
        batch.drop_column("generation")
    with op.batch_alter_table("repositories") as batch:
        for column in ("deleted_at", "spec", "annotations", "labels", "generation", "resource_version", "uid"):
            batch.drop_column(column)
