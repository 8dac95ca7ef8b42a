"""imports: where imported manifests came from, imported tag references, import conditions

Revision ID: 0008
Revises: 0007
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.add_column("repositories", sa.Column("tag_conditions", sa.JSON(), nullable=True))
    op.add_column("repositories", sa.Column("imported_at", TS, nullable=True))
    op.add_column("manifests", sa.Column("upstream", sa.String(length=512), nullable=True))
    op.add_column("manifests", sa.Column("upstream_insecure", sa.Boolean(), nullable=True))
    op.add_column("tag_events", sa.Column("reference", sa.String(length=700), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("tag_events") as batch:
        batch.drop_column("reference")
    with op.batch_alter_table("manifests") as batch:
        batch.drop_column("upstream_insecure")
        batch.drop_column("upstream")
    with op.batch_alter_table("repositories") as batch:
        batch.drop_column("imported_at")
        batch.drop_column("tag_conditions")
