"""cancellation terms of each rate plan, and the terms a quote was issued with

Revision ID: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("rate_plans", sa.Column("time_zone", sa.String(64), nullable=False, server_default="UTC"))
    op.add_column("rate_plans", sa.Column("free_cancellation_hours", sa.Integer, nullable=False, server_default="48"))
    op.add_column("rate_plans", sa.Column("penalty_nights", sa.Integer, nullable=False, server_default="1"))
    op.add_column("quotes", sa.Column("terms", sa.Text, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("quotes") as batch:
        batch.drop_column("terms")
    with op.batch_alter_table("rate_plans") as batch:
        batch.drop_column("penalty_nights")
        batch.drop_column("free_cancellation_hours")
        batch.drop_column("time_zone")
