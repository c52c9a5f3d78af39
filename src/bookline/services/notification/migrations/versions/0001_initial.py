"""the sent-notification log

Revision ID: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "sent_notifications",
        sa.Column("booking_id", sa.String(40), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("message_id", sa.String(64), nullable=False),
        sa.Column("reservation_id", sa.String(40), nullable=True),
        sa.Column("sent_at", sa.Float, nullable=False),
        sa.PrimaryKeyConstraint("booking_id", "kind", name="pk_sent_notifications"),
    )


def downgrade() -> None:
    op.drop_table("sent_notifications")
