"""events: the event log notifications deliver, each endpoint's delivery state, and webhook
endpoints added through the API

Revision ID: 0009
Revises: 0008
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "events",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("at", TS, nullable=False),
        sa.Column("action", sa.String(length=16), nullable=False),
        sa.Column("namespace", sa.String(length=253), nullable=True),
        sa.Column("repository", sa.String(length=255), nullable=False),
        sa.Column("media_type", sa.String(length=255), nullable=True),
        sa.Column("digest", sa.String(length=160), nullable=True),
        sa.Column("size", sa.BigInteger(), nullable=True),
        sa.Column("tag", sa.String(length=128), nullable=True),
        sa.Column("actor", sa.String(length=255), nullable=True),
        sa.Column("detail", sa.JSON(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_events")),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_events_at", "events", ["at"])
    op.create_index("ix_events_namespace", "events", ["namespace", "id"])
    op.create_table(
        "notification_cursors",
        sa.Column("endpoint", sa.String(length=253), nullable=False),
        sa.Column("cursor", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.Column("last_success_at", TS, nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("last_error_at", TS, nullable=True),
        sa.Column("failures", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("delivered", sa.BigInteger(), nullable=False, server_default="0"),
        sa.Column("dropped", sa.BigInteger(), nullable=False, server_default="0"),
        sa.PrimaryKeyConstraint("endpoint", name=op.f("pk_notification_cursors")),
    )
    op.create_table(
        "notification_endpoints",
        sa.Column("name", sa.String(length=253), nullable=False),
        sa.Column("uid", sa.String(length=36), nullable=False),
        sa.Column("spec", sa.JSON(), nullable=False),
        sa.Column("labels", sa.JSON(), nullable=True),
        sa.Column("annotations", sa.JSON(), nullable=True),
        sa.Column("generation", sa.Integer(), nullable=False, server_default="1"),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("resource_version", sa.BigInteger(), nullable=False, server_default="1"),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_notification_endpoints")),
    )


def downgrade() -> None:
    op.drop_table("notification_endpoints")
    op.drop_table("notification_cursors")
    op.drop_index("ix_events_namespace", table_name="events")
    op.drop_index("ix_events_at", table_name="events")
    op.drop_table("events")
