"""the saga's lease: its owner, its expiry and the fencing token every saga-log write checks

Revision ID: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("bookings", sa.Column("lease_owner", sa.String(64), nullable=True))
    op.add_column("bookings", sa.Column("lease_expires_at", sa.Float, nullable=True))
    op.add_column("bookings", sa.Column("fence", sa.Integer, nullable=False, server_default="0"))


def downgrade() -> None:
    with op.batch_alter_table("bookings") as batch:
        batch.drop_column("fence")
        batch.drop_column("lease_expires_at")
        batch.drop_column("lease_owner")
