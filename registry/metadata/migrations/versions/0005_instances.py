"""instances: each running server process, with the address it listens on and a heartbeat

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "instances",
        sa.Column("name", sa.String(length=253), nullable=False),
        sa.Column("address", sa.String(length=300), nullable=False),
        sa.Column("host", sa.String(length=253), nullable=False),
        sa.Column("version", sa.String(length=64), nullable=False),
        sa.Column("started_at", TS, nullable=False),
        sa.Column("heartbeat_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_instances")),
    )


def downgrade() -> None:
    op.drop_table("instances")
